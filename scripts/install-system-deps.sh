#!/usr/bin/env bash
# Install the Debian packages sscard's tests and demo need, only those missing.
# pcscd + vsmartcard-vpcd: the real PC/SC stack with a virtual reader the emulated card plugs into;
# libpcsclite-dev + swig: pyscard builds from source; opensc: a client we did not write;
# softhsm2: a real PKCS#11 token; gettext: GNU msgfmt checks and compiles our catalogs independently of Babel;
# chromium + chromium-driver + fonts-wqy-microhei: the kiosk page in a real browser (Chinese glyphs in
# its screenshots); openjdk-17-jdk-headless, mono-mcs + mono-runtime + libmono-system-net-http4.0-cil:
# the Java and C# client examples of docs/agent.md run against the agent;
# postgresql: the tests and bench/centre.py start a throwaway server from its binaries
# (tests/pgrig.py) for the store on PostgreSQL, and psql is a client we did not write.
set -euo pipefail
packages=(pcscd vsmartcard-vpcd libpcsclite-dev swig opensc softhsm2 gettext chromium chromium-driver fonts-wqy-microhei openjdk-17-jdk-headless mono-mcs mono-runtime libmono-system-net-http4.0-cil postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
