#!/usr/bin/env bash
# Does the device's own code decrypt what composer encrypts for it? Builds SecretManager's crypto
# classes (crypto/Crypter, RSAMasterKey, KeyChain, MasterKey, SecretCryptoException) against the
# AWS Encryption SDK for Java at the tag SecretManager pins (pom.xml: 2.2.0), then decrypts, as
# LocalStoreMap.decrypt does, the secretResponse that composer.personalize.secrets made for a
# fresh RSA device, and checks that another device's key and another ARN are refused.
#
# Not part of the test suite: it needs both repositories checked out (no Maven Central here) and
# Java 17 with Debian's libbcprov-java, libcommons-lang3-java and libjsr305-java.
#
#   tools/secretmanager-crosscheck.sh SECRET_MANAGER_GIT ENCRYPTION_SDK_JAVA_GIT
#
# SECRET_MANAGER_GIT: a clone of aws-greengrass/aws-greengrass-secret-manager (SM_REV, default
# HEAD); ENCRYPTION_SDK_JAVA_GIT: a clone of aws/aws-encryption-sdk-java (SDK_REV, default v2.2.0).
set -euo pipefail

sm=$1 sdk=$2
sm_rev=${SM_REV:-HEAD} sdk_rev=${SDK_REV:-v2.2.0}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# the SDK without its KMS provider (it needs the AWS SDK, and SecretManager does not use it)
git -C "$sdk" archive "$sdk_rev" src/main/java | tar -x
rm -rf src/main/java/com/amazonaws/encryptionsdk/kms
mkdir -p src/stub/edu/umd/cs/findbugs/annotations  # a build-time annotation, not in Debian
echo 'package edu.umd.cs.findbugs.annotations;
public @interface SuppressFBWarnings { String[] value() default {}; String justification() default ""; }' \
  > src/stub/edu/umd/cs/findbugs/annotations/SuppressFBWarnings.java

pkg=src/gg/com/aws/greengrass/secretmanager
mkdir -p "$pkg/crypto" "$pkg/exception"
for f in crypto/Crypter.java crypto/RSAMasterKey.java crypto/MasterKey.java crypto/KeyChain.java \
         exception/SecretCryptoException.java; do
  git -C "$sm" show "$sm_rev:src/main/java/com/aws/greengrass/secretmanager/$f" > "$pkg/$f"
done
# KeyChain's one Lombok @Getter, written out (Lombok is not installed)
sed -i -e '/^import lombok.Getter;/d' -e '/^    @Getter$/d' \
  -e 's/^\(    private \(final \)\{0,1\}List<JceMasterKey> keyProviders = new ArrayList<>();\)/\1\n    public List<JceMasterKey> getKeyProviders() { return keyProviders; }/' \
  "$pkg/crypto/KeyChain.java"

cat > src/gg/DeviceDecrypt.java <<'EOF'
import com.aws.greengrass.secretmanager.crypto.Crypter;
import com.aws.greengrass.secretmanager.crypto.KeyChain;
import com.aws.greengrass.secretmanager.crypto.RSAMasterKey;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;

/** LocalStoreMap.loadCrypter and decrypt. Args: key.pem (PKCS#8) cert.pem entries.tsv
 *  (ARN TAB base64 per line); prints ARN TAB hex(plaintext) per line. */
public class DeviceDecrypt {
    public static void main(String[] args) throws Exception {
        String pem = new String(Files.readAllBytes(Paths.get(args[0])));
        byte[] der = Base64.getMimeDecoder().decode(pem.replaceAll("-----[A-Z ]+-----", ""));
        PrivateKey key = KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(der));
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509")
            .generateCertificate(Files.newInputStream(Paths.get(args[1])));
        KeyChain chain = new KeyChain();
        chain.addMasterKey(RSAMasterKey.createInstance(cert.getPublicKey(), key));
        Crypter crypter = new Crypter(chain);
        for (String line : Files.readAllLines(Paths.get(args[2]))) {
            String[] parts = line.split("\t");
            byte[] plain = crypter.decrypt(Base64.getDecoder().decode(parts[1]), parts[0]);
            StringBuilder hex = new StringBuilder();
            for (byte b : plain) {
                hex.append(String.format("%02x", b));
            }
            System.out.println(parts[0] + "\t" + hex);
        }
    }
}
EOF
cp=/usr/share/java/bcprov.jar:/usr/share/java/commons-lang3.jar:/usr/share/java/jsr305.jar
javac -nowarn -d classes -cp "$cp" $(find src -name '*.java') > javac.txt 2>&1 || {
  cat javac.txt; exit 1; }

for device in d1 d2; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$device.key" -out "$device.crt" \
    -subj "/CN=$device" -days 1 2>/dev/null
done

# composer's side: the secrets (a UTF-8 string and a multi-frame binary) encrypted for d1, wrapped
# as SecretManager's version at SM_REV unwraps them
# (SM_VERSION overrides: the newest tag reachable from a branch head can be an older release's)
version=${SM_VERSION:-$(git -C "$sm" describe --tags "$sm_rev" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)}
SM_VERSION=$version PYTHONPATH="$here" python3 - <<'EOF'
import base64
import json
import os
from pathlib import Path

from composer.personalize.secrets import load_secrets, secret_response_for, store_format

prefix = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
blob = bytes(range(256)) * 200  # 51,200 bytes: thirteen 4 KiB frames
records = [
    {"ARN": prefix + "db-AbCdEf", "Name": "db", "VersionId": "v1", "SecretString": "pässword ✓",
     "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000},
    {"ARN": prefix + "blob-GhIjKl", "Name": "blob", "VersionId": "v1",
     "SecretBinary": base64.b64encode(blob).decode(), "VersionStages": ["AWSCURRENT"],
     "CreatedDate": 1700000000},
]
secrets = load_secrets(json.dumps(records).encode(), "crosscheck")
wrapping = store_format(os.environ["SM_VERSION"]).wrapping
print(f"SecretManager {os.environ['SM_VERSION']}: data keys wrapped with {wrapping.value}")
store = json.loads(secret_response_for(secrets, Path("d1.crt").read_bytes(), "d1", wrapping))
lines = [f"{e['arn']}\t{e.get('encryptedSecretString') or e['encryptedSecretBinary']}"
         for e in store["secrets"]]
Path("d1.tsv").write_text("\n".join(lines) + "\n")
Path("other-arn.tsv").write_text(prefix + "other-MnOpQr\t" + lines[0].split("\t")[1] + "\n")
expected = sorted([f"{prefix}db-AbCdEf\t{'pässword ✓'.encode().hex()}",
                   f"{prefix}blob-GhIjKl\t{blob.hex()}"])
Path("expected.txt").write_text("\n".join(expected) + "\n")
EOF

run() { java -cp "classes:$cp" DeviceDecrypt "$@"; }
run d1.key d1.crt d1.tsv | sort > got.txt
cmp got.txt expected.txt
echo "ok: SecretManager's Crypter ($sm_rev) on the Encryption SDK for Java $sdk_rev decrypts both"
if run d2.key d2.crt d1.tsv > /dev/null 2> err.txt; then
  echo "FAIL: another device's key decrypted the secrets"; exit 1
fi
grep -q 'Unable to decrypt any data keys' err.txt
echo "ok: another device's key is refused (Unable to decrypt any data keys)"
if run d1.key d1.crt other-arn.tsv > /dev/null 2> err.txt; then
  echo "FAIL: a ciphertext decrypted under another ARN"; exit 1
fi
grep -q 'Context mismatch' err.txt
echo "ok: another ARN is refused (Context mismatch)"
