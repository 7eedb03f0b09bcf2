#!/usr/bin/env python3
"""JA3 and JA4 fingerprints of TLS ClientHellos, side by side (docs/decisions.md, issue 18).

Usage: tls-fingerprint.py NAME=HEXFILE ...   (each file: one ClientHello record, hex)
Prints, per ClientHello: JA3 (string and MD5), JA4, and its parts (cipher suites, extensions,
groups, signature algorithms, ALPN), then what differs from the first one.
"""
import hashlib
import sys

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}


def u16(b, i):
    return int.from_bytes(b[i:i + 2], "big")


def parse(record):
    assert record[0] == 0x16, "not a TLS handshake record"
    hs = record[5:]
    assert hs[0] == 1, "not a ClientHello"
    body = hs[4:]
    legacy_version = u16(body, 0)
    i = 2 + 32
    i += 1 + body[i]  # session id
    n = u16(body, i)
    ciphers = [u16(body, i + 2 + k) for k in range(0, n, 2)]
    i += 2 + n
    i += 1 + body[i]  # compression
    end = i + 2 + u16(body, i)
    i += 2
    exts, groups, formats, sigalgs, alpn, versions, sni = [], [], [], [], [], [], False
    while i < end:
        t, ln = u16(body, i), u16(body, i + 2)
        data = body[i + 4:i + 4 + ln]
        exts.append(t)
        if t == 0:
            sni = True
        elif t == 10:
            groups = [u16(data, 2 + k) for k in range(0, u16(data, 0), 2)]
        elif t == 11:
            formats = list(data[1:1 + data[0]])
        elif t == 13:
            sigalgs = [u16(data, 2 + k) for k in range(0, u16(data, 0), 2)]
        elif t == 16:
            j = 2
            while j < 2 + u16(data, 0):
                alpn.append(data[j + 1:j + 1 + data[j]].decode())
                j += 1 + data[j]
        elif t == 43:
            versions = [u16(data, 1 + k) for k in range(0, data[0], 2)]
        i += 4 + ln
    return dict(legacy_version=legacy_version, ciphers=ciphers, exts=exts, groups=groups,
                formats=formats, sigalgs=sigalgs, alpn=alpn, versions=versions, sni=sni)


def nogrease(xs):
    return [x for x in xs if x not in GREASE]


def ja3(h):
    s = ",".join([str(h["legacy_version"]),
                  "-".join(map(str, nogrease(h["ciphers"]))),
                  "-".join(map(str, nogrease(h["exts"]))),
                  "-".join(map(str, nogrease(h["groups"]))),
                  "-".join(map(str, h["formats"]))])
    return s, hashlib.md5(s.encode()).hexdigest()


def ja4(h):
    versions = nogrease(h["versions"]) or [h["legacy_version"]]
    v = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}.get(max(versions), "00")
    ciphers, exts = nogrease(h["ciphers"]), nogrease(h["exts"])
    alpn = h["alpn"][0] if h["alpn"] else ""
    a = f"t{v}{'d' if h['sni'] else 'i'}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
    a += (alpn[0] + alpn[-1]) if alpn else "00"
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12]
    b = sha(",".join(sorted(f"{c:04x}" for c in ciphers)))
    c_exts = ",".join(sorted(f"{e:04x}" for e in exts if e not in (0x0000, 0x0010)))
    c = sha(c_exts + "_" + ",".join(f"{s:04x}" for s in nogrease(h["sigalgs"])))
    return f"{a}_{b}_{c}"


def main():
    hellos = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        hellos.append((name, parse(bytes.fromhex(open(path).read().strip()))))
    for name, h in hellos:
        s, md5 = ja3(h)
        print(f"== {name}\nJA4 {ja4(h)}\nJA3 {md5}  ({s})")
        print(f"  ciphers    {[hex(c) for c in nogrease(h['ciphers'])]}")
        print(f"  extensions {nogrease(h['exts'])}")
        print(f"  groups     {[hex(g) for g in nogrease(h['groups'])]}")
        print(f"  sigalgs    {[hex(s) for s in nogrease(h['sigalgs'])]}")
        print(f"  alpn       {h['alpn']}  sni {h['sni']}  grease {any(x in GREASE for x in h['ciphers'])}")
    if len(hellos) > 1:
        (n0, h0) = hellos[0]
        for name, h in hellos[1:]:
            print(f"== {name} vs {n0}")
            for key in ("ciphers", "exts", "groups", "sigalgs", "alpn"):
                a, b = set(nogrease(h[key]) if key != "alpn" else h[key]), set(nogrease(h0[key]) if key != "alpn" else h0[key])
                if a != b:
                    print(f"  {key}: only {name}: {sorted(a - b)}; only {n0}: {sorted(b - a)}")


if __name__ == "__main__":
    main()
