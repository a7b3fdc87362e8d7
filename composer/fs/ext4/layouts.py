"""The on-disk structures of ext4 and jbd2, declared once (docs/ext4.md, composer/structs.py).

Field names and order are those of e2fsprogs `lib/ext2fs/ext2_fs.h`, `ext3_extents.h` and
`kernel-jbd.h` (the kernel's `fs/ext4/ext4.h` and `include/linux/jbd2.h` agree), documented at
<https://www.kernel.org/doc/html/latest/filesystems/ext4/>. Everything is little-endian except
the journal, which is big-endian. The sizes are those of the profile composer writes: 4 KiB
blocks, 256-byte inodes, 64-byte group descriptors (64bit), metadata_csum tails.

Declared here for readers and writers alike; the writer modules still pack positionally and
move to these declarations one by one.
"""

from __future__ import annotations

from composer.structs import Struct

_KDOC = "https://www.kernel.org/doc/html/latest/filesystems/ext4/"

SUPERBLOCK = Struct("ext4 superblock", f"ext2_fs.h struct ext2_super_block; {_KDOC}super.html",
                    1024, "<", (
                        ("s_inodes_count", "I"),
                        ("s_blocks_count_lo", "I"),
                        ("s_r_blocks_count_lo", "I"),
                        ("s_free_blocks_count_lo", "I"),
                        ("s_free_inodes_count", "I"),
                        ("s_first_data_block", "I"),
                        ("s_log_block_size", "I"),
                        ("s_log_cluster_size", "I"),
                        ("s_blocks_per_group", "I"),
                        ("s_clusters_per_group", "I"),
                        ("s_inodes_per_group", "I"),
                        ("s_mtime", "I"),
                        ("s_wtime", "I"),
                        ("s_mnt_count", "H"),
                        ("s_max_mnt_count", "H"),  # -1 as 0xFFFF: no mount-count check
                        ("s_magic", "H"),  # 0xEF53
                        ("s_state", "H"),
                        ("s_errors", "H"),
                        ("s_minor_rev_level", "H"),
                        ("s_lastcheck", "I"),
                        ("s_checkinterval", "I"),
                        ("s_creator_os", "I"),
                        ("s_rev_level", "I"),
                        ("s_def_resuid", "H"),
                        ("s_def_resgid", "H"),
                        ("s_first_ino", "I"),
                        ("s_inode_size", "H"),
                        ("s_block_group_nr", "H"),  # the group a backup copy sits in
                        ("s_feature_compat", "I"),
                        ("s_feature_incompat", "I"),
                        ("s_feature_ro_compat", "I"),
                        ("s_uuid", "16s"),
                        ("s_volume_name", "16s"),
                        ("s_last_mounted", "64s"),
                        ("s_algorithm_usage_bitmap", "I"),
                        ("s_prealloc_blocks", "B"),
                        ("s_prealloc_dir_blocks", "B"),
                        ("s_reserved_gdt_blocks", "H"),
                        ("s_journal_uuid", "16s"),
                        ("s_journal_inum", "I"),
                        ("s_journal_dev", "I"),
                        ("s_last_orphan", "I"),
                        ("s_hash_seed", "16s"),  # four LE u32
                        ("s_def_hash_version", "B"),
                        ("s_jnl_backup_type", "B"),
                        ("s_desc_size", "H"),
                        ("s_default_mount_opts", "I"),
                        ("s_first_meta_bg", "I"),
                        ("s_mkfs_time", "I"),
                        ("s_jnl_blocks", "68s"),  # the journal inode's i_block, i_size_high, i_size
                        ("s_blocks_count_hi", "I"),
                        ("s_r_blocks_count_hi", "I"),
                        ("s_free_blocks_hi", "I"),
                        ("s_min_extra_isize", "H"),
                        ("s_want_extra_isize", "H"),
                        ("s_flags", "I"),  # signed or unsigned directory hash
                        ("s_raid_stride", "H"),
                        ("s_mmp_update_interval", "H"),
                        ("s_mmp_block", "Q"),
                        ("s_raid_stripe_width", "I"),
                        ("s_log_groups_per_flex", "B"),
                        ("s_checksum_type", "B"),  # 1: crc32c
                        ("s_encryption_level", "B"),
                        ("s_reserved_pad", "B"),
                        ("s_kbytes_written", "Q"),
                        ("s_snapshot_inum", "I"),
                        ("s_snapshot_id", "I"),
                        ("s_snapshot_r_blocks_count", "Q"),
                        ("s_snapshot_list", "I"),
                        ("s_error_count", "I"),
                        ("s_first_error_time", "I"),
                        ("s_first_error_ino", "I"),
                        ("s_first_error_block", "Q"),
                        ("s_first_error_func", "32s"),
                        ("s_first_error_line", "I"),
                        ("s_last_error_time", "I"),
                        ("s_last_error_ino", "I"),
                        ("s_last_error_line", "I"),
                        ("s_last_error_block", "Q"),
                        ("s_last_error_func", "32s"),
                        ("s_mount_opts", "64s"),
                        ("s_usr_quota_inum", "I"),
                        ("s_grp_quota_inum", "I"),
                        ("s_overhead_clusters", "I"),
                        ("s_backup_bgs", "8s"),  # two LE u32 (sparse_super2)
                        ("s_encrypt_algos", "4s"),
                        ("s_encrypt_pw_salt", "16s"),
                        ("s_lpf_ino", "I"),
                        ("s_prj_quota_inum", "I"),
                        ("s_checksum_seed", "I"),
                        ("s_wtime_hi", "B"),
                        ("s_mtime_hi", "B"),
                        ("s_mkfs_time_hi", "B"),
                        ("s_lastcheck_hi", "B"),
                        ("s_first_error_time_hi", "B"),
                        ("s_last_error_time_hi", "B"),
                        ("s_first_error_errcode", "B"),
                        ("s_last_error_errcode", "B"),
                        ("s_encoding", "H"),
                        ("s_encoding_flags", "H"),
                        ("s_orphan_file_inum", "I"),
                        ("s_reserved", "376s"),
                        ("s_checksum", "I"),  # crc32c of the 1020 bytes before it
                    ))

GROUP_DESC = Struct("ext4 group descriptor (64bit)",
                    f"ext2_fs.h struct ext4_group_desc; {_KDOC}group_descr.html", 64, "<", (
                        ("bg_block_bitmap_lo", "I"),
                        ("bg_inode_bitmap_lo", "I"),
                        ("bg_inode_table_lo", "I"),
                        ("bg_free_blocks_count_lo", "H"),
                        ("bg_free_inodes_count_lo", "H"),
                        ("bg_used_dirs_count_lo", "H"),
                        ("bg_flags", "H"),
                        ("bg_exclude_bitmap_lo", "I"),
                        ("bg_block_bitmap_csum_lo", "H"),
                        ("bg_inode_bitmap_csum_lo", "H"),
                        ("bg_itable_unused_lo", "H"),
                        ("bg_checksum", "H"),
                        ("bg_block_bitmap_hi", "I"),
                        ("bg_inode_bitmap_hi", "I"),
                        ("bg_inode_table_hi", "I"),
                        ("bg_free_blocks_count_hi", "H"),
                        ("bg_free_inodes_count_hi", "H"),
                        ("bg_used_dirs_count_hi", "H"),
                        ("bg_itable_unused_hi", "H"),
                        ("bg_exclude_bitmap_hi", "I"),
                        ("bg_block_bitmap_csum_hi", "H"),
                        ("bg_inode_bitmap_csum_hi", "H"),
                        ("bg_reserved", "I"),
                    ))

INODE = Struct("ext4 inode (256 bytes)",
               f"ext2_fs.h struct ext2_inode_large; {_KDOC}inodes.html", 256, "<", (
                   ("i_mode", "H"),
                   ("i_uid", "H"),  # low 16 bits
                   ("i_size_lo", "I"),
                   ("i_atime", "I"),
                   ("i_ctime", "I"),
                   ("i_mtime", "I"),
                   ("i_dtime", "I"),
                   ("i_gid", "H"),  # low 16 bits
                   ("i_links_count", "H"),
                   ("i_blocks_lo", "I"),  # 512-byte units
                   ("i_flags", "I"),
                   ("l_i_version", "I"),
                   ("i_block", "60s"),  # extent root, fast symlink or device number
                   ("i_generation", "I"),
                   ("i_file_acl_lo", "I"),  # the xattr block
                   ("i_size_high", "I"),
                   ("i_faddr", "I"),
                   ("l_i_blocks_hi", "H"),
                   ("l_i_file_acl_high", "H"),
                   ("l_i_uid_high", "H"),
                   ("l_i_gid_high", "H"),
                   ("l_i_checksum_lo", "H"),
                   ("l_i_reserved", "H"),
                   ("i_extra_isize", "H"),  # 32: the fields below up to i_projid
                   ("i_checksum_hi", "H"),
                   ("i_ctime_extra", "I"),  # nanoseconds << 2 | two more epoch bits
                   ("i_mtime_extra", "I"),
                   ("i_atime_extra", "I"),
                   ("i_crtime", "I"),
                   ("i_crtime_extra", "I"),
                   ("i_version_hi", "I"),
                   ("i_projid", "I"),
                   ("ibody_xattrs", "96s"),  # XATTR_IBODY_HEADER, entries, values
               ))

EXTENT_HEADER = Struct("ext4_extent_header", f"ext3_extents.h; {_KDOC}ifork.html", 12, "<", (
    ("eh_magic", "H"),  # 0xF30A
    ("eh_entries", "H"),
    ("eh_max", "H"),
    ("eh_depth", "H"),  # 0: the entries are extents; else indexes
    ("eh_generation", "I"),
))
EXTENT = Struct("ext4_extent", f"ext3_extents.h; {_KDOC}ifork.html", 12, "<", (
    ("ee_block", "I"),  # first logical block
    ("ee_len", "H"),  # above 32768: unwritten
    ("ee_start_hi", "H"),
    ("ee_start_lo", "I"),
))
EXTENT_INDEX = Struct("ext4_extent_idx", f"ext3_extents.h; {_KDOC}ifork.html", 12, "<", (
    ("ei_block", "I"),  # the first logical block its subtree covers
    ("ei_leaf_lo", "I"),
    ("ei_leaf_hi", "H"),
    ("ei_unused", "H"),
))
EXTENT_TAIL = Struct("ext4_extent_tail", f"ext3_extents.h; {_KDOC}ifork.html", 4, "<", (
    ("et_checksum", "I"),  # after eh_max entries of a tree block
))

DIR_ENTRY = Struct("ext4_dir_entry_2 (without the name)",
                   f"ext2_fs.h struct ext2_dir_entry_2; {_KDOC}directory.html", 8, "<", (
                       ("inode", "I"),
                       ("rec_len", "H"),
                       ("name_len", "B"),
                       ("file_type", "B"),
                   ))
DIR_TAIL = Struct("ext4_dir_entry_tail",
                  f"ext2_fs.h struct ext2_dir_entry_tail; {_KDOC}directory.html", 12, "<", (
                      ("det_reserved_zero1", "I"),
                      ("det_rec_len", "H"),  # 12
                      ("det_reserved_zero2", "B"),
                      ("det_reserved_ft", "B"),  # 0xDE
                      ("det_checksum", "I"),
                  ))

# an htree root: "." and ".." (which spans the rest of the block), dx_root_info, then the
# count/limit pair that overlays the hash of the first dx_entry, and that entry's block
DX_ROOT = Struct("dx_root (fixed part)", f"kernel fs/ext4/namei.c struct dx_root; {_KDOC}"
                 "directory.html", 40, "<", (
                     ("dot_inode", "I"),
                     ("dot_rec_len", "H"),
                     ("dot_name_len", "B"),
                     ("dot_file_type", "B"),
                     ("dot_name", "4s"),
                     ("dotdot_inode", "I"),
                     ("dotdot_rec_len", "H"),
                     ("dotdot_name_len", "B"),
                     ("dotdot_file_type", "B"),
                     ("dotdot_name", "4s"),
                     ("reserved_zero", "I"),
                     ("hash_version", "B"),
                     ("info_length", "B"),  # 8
                     ("indirect_levels", "B"),
                     ("unused_flags", "B"),
                     ("limit", "H"),
                     ("count", "H"),
                     ("block", "I"),  # the leaf for hashes below the second entry's
                 ))
DX_NODE = Struct("dx_node (fixed part)", f"kernel fs/ext4/namei.c struct dx_node; {_KDOC}"
                 "directory.html", 16, "<", (
                     ("fake_inode", "I"),  # 0: an empty directory entry over the whole block
                     ("fake_rec_len", "H"),
                     ("fake_name_len", "B"),
                     ("fake_file_type", "B"),
                     ("limit", "H"),
                     ("count", "H"),
                     ("block", "I"),
                 ))
DX_ENTRY = Struct("dx_entry", f"kernel fs/ext4/namei.c struct dx_entry; {_KDOC}directory.html",
                  8, "<", (("hash", "I"), ("block", "I")))
DX_TAIL = Struct("dx_tail", f"kernel fs/ext4/namei.c struct dx_tail; {_KDOC}directory.html", 8,
                 "<", (("dt_reserved", "I"), ("dt_checksum", "I")))

XATTR_BLOCK_HEADER = Struct("ext2_ext_attr_header",
                            f"ext2_ext_attr.h; {_KDOC}attributes.html", 32, "<", (
                                ("h_magic", "I"),  # 0xEA020000
                                ("h_refcount", "I"),
                                ("h_blocks", "I"),  # 1
                                ("h_hash", "I"),
                                ("h_checksum", "I"),
                                ("h_reserved", "12s"),
                            ))
XATTR_IBODY_HEADER = Struct("ext4_xattr_ibody_header", f"ext2_ext_attr.h; {_KDOC}"
                            "attributes.html", 4, "<", (("h_magic", "I"),))
XATTR_ENTRY = Struct("ext2_ext_attr_entry (without the name)",
                     f"ext2_ext_attr.h; {_KDOC}attributes.html", 16, "<", (
                         ("e_name_len", "B"),
                         ("e_name_index", "B"),  # 1 user., 2/3 POSIX ACLs, 4 trusted., 6 security.
                         ("e_value_offs", "H"),
                         ("e_value_inum", "I"),
                         ("e_value_size", "I"),
                         ("e_hash", "I"),
                     ))

JOURNAL_SUPERBLOCK = Struct("jbd2 journal superblock (v2)",
                            "e2fsprogs lib/ext2fs/kernel-jbd.h journal_superblock_t; kernel "
                            f"include/linux/jbd2.h; {_KDOC}journal.html", 1024, ">", (
                                ("h_magic", "I"),  # 0xC03B3998
                                ("h_blocktype", "I"),  # 4: superblock v2
                                ("h_sequence", "I"),
                                ("s_blocksize", "I"),
                                ("s_maxlen", "I"),
                                ("s_first", "I"),
                                ("s_sequence", "I"),
                                ("s_start", "I"),  # 0: clean, nothing to replay
                                ("s_errno", "i"),
                                ("s_feature_compat", "I"),
                                ("s_feature_incompat", "I"),
                                ("s_feature_ro_compat", "I"),
                                ("s_uuid", "16s"),
                                ("s_nr_users", "I"),
                                ("s_dynsuper", "I"),
                                ("s_max_transaction", "I"),
                                ("s_max_trans_data", "I"),
                                ("s_checksum_type", "B"),
                                ("s_padding2", "3s"),
                                ("s_num_fc_blks", "I"),
                                ("s_head", "I"),
                                ("s_padding", "160s"),
                                ("s_checksum", "I"),
                                ("s_users", "768s"),  # 16 UUIDs of 48 bytes
                            ))
