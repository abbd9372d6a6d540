#!/usr/bin/env bash
# Makes a certificate authority and certificates signed by it, for TLS and mutual TLS between the
# services on one machine or in a development cluster (production: cert-manager,
# docs/security.md).
#   scripts/make-certs.sh DIR [NAME...]
# DIR/ca.crt and DIR/ca.key are made unless present; then DIR/NAME.crt and DIR/NAME.key for each
# NAME (default: patients morgue appointments), each valid as server and as client, naming
#   URI:spiffe://hospital/NAME   the identity the services authorize callers by
#   DNS:NAME, DNS:NAME.<namespace>.svc (HOSPITAL_CERT_NAMESPACE, default hospital),
#   DNS:localhost, IP:127.0.0.1  the names a client may dial
# Another DIR makes another, unrelated CA (for operators, or for tests of a stranger's
# certificate). Keys are EC P-256, readable by their owner only; certificates last
# HOSPITAL_CERT_DAYS days (default 30). Re-running with an existing NAME renews its certificate
# in place (written to a temporary file and renamed, so a watching service never reads half).
set -euo pipefail

dir=${1:?usage: scripts/make-certs.sh DIR [NAME...]}
shift
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(patients morgue appointments)
days=${HOSPITAL_CERT_DAYS:-30}
namespace=${HOSPITAL_CERT_NAMESPACE:-hospital}
mkdir -p "$dir"
umask 077

if [[ ! -s "$dir/ca.key" || ! -s "$dir/ca.crt" ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -days "$((days + 1))" -subj "/CN=hospital CA $(basename "$dir")" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
fi

for name in "${names[@]}"; do
  [[ "$name" =~ ^[a-z0-9][a-z0-9.-]*$ ]] || { echo "bad name: $name" >&2; exit 2; }
  work=$(mktemp -d)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key" 2>/dev/null
  openssl req -new -key "$work/key" -subj "/CN=$name" -out "$work/csr"
  cat >"$work/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=URI:spiffe://hospital/$name,DNS:$name,DNS:$name.$namespace.svc,DNS:localhost,IP:127.0.0.1
EXT
  openssl x509 -req -in "$work/csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -extfile "$work/ext" -out "$work/crt" 2>/dev/null
  mv "$work/key" "$dir/$name.key.tmp" && mv "$dir/$name.key.tmp" "$dir/$name.key"
  mv "$work/crt" "$dir/$name.crt.tmp" && mv "$dir/$name.crt.tmp" "$dir/$name.crt"
  rm -rf "$work"
done
chmod 644 "$dir"/*.crt
