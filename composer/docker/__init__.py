"""Docker images preloaded without a daemon: image archives (`docker save`, OCI layouts and
`oci-archive`) turned into the files of Docker's overlay2 store, as entries of the device tree.

bundle.py reads an archive or folder; docker_save.py and oci.py read its format into
ArchiveImage values; layer.py checks and reads a layer; store.py lays out the overlay2 store.
"""
