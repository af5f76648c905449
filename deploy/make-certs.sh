#!/usr/bin/env bash
# Self-signed CA + SuperLink server certificate for TLS (testing / a private federation).
#
#   deploy/make-certs.sh [DIR]        (default: $TLS_DIR, else $DEPLOY_STATE_DIR/certs)
#
# Writes ca.crt, ca.key, server.crt, server.key in DIR. The server certificate's subjectAltName
# comes from TLS_SAN (default "IP:127.0.0.1,DNS:localhost"); for a SuperLink on another host use
# e.g. TLS_SAN="DNS:superlink.example.org,IP:10.0.0.5". Give ca.crt (never ca.key or server.key)
# to every SuperNode (--root-certificates) and to `flwr` users (root-certificates in the Flower config).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need openssl

DIR="${1:-${TLS_DIR:-$DEPLOY_STATE_DIR/certs}}"
[[ "$DIR" == /* ]] || DIR="$CALLER_PWD/$DIR"
TLS_SAN="${TLS_SAN:-IP:127.0.0.1,DNS:localhost}"
DAYS="${TLS_DAYS:-365}"
mkdir -p "$DIR"
cd "$DIR"

openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$DAYS" \
    -keyout ca.key -out ca.crt -subj "/CN=unlearn-fl federation CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -sha256 -keyout server.key -out server.csr \
    -subj "/CN=unlearn-fl SuperLink" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$TLS_SAN" > server.ext
openssl x509 -req -sha256 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days "$DAYS" -out server.crt -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 600 ca.key server.key
openssl verify -CAfile ca.crt server.crt >/dev/null
echo "certificates in $(pwd): ca.crt server.crt server.key (SAN $TLS_SAN)"
