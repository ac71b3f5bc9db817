"""`stvfm weights fetch <backbone> [--cache-dir D]` and `stvfm weights verify <file> [--backbone B]`."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("weights", help="download / verify pretrained VFM weights (model.weights)")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    f = wsub.add_parser("fetch", help="download a backbone's published weights into a cache dir (needs network)")
    f.add_argument("backbone", help="dinov2_vits14 | clip_vitb16 | deit_vitb16 | vit_tiny")
    f.add_argument(
        "--cache-dir", default=None, help="target folder (default: $STVFM_WEIGHTS_DIR or ~/.cache/stvfm/weights)"
    )
    f.set_defaults(func=run_fetch)
    v = wsub.add_parser("verify", help="check a weights file: size/sha256 of known files, loadable tensors")
    v.add_argument("file")
    v.add_argument("--backbone", default=None, help="also load it into this backbone (as training would)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run_verify)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_fetch(args) -> int:
    from stvfm.models.weights import fetch_weights

    r = fetch_weights(args.backbone, args.cache_dir)
    print(
        f"{r['path']}  {r['bytes']:,} bytes  sha256 {r['sha256']}"
        + ("  (matches the published file)" if r["known"] else "")
    )
    print(f"use it with:  --set model.backbone={args.backbone} --set model.weights={r['path']}  (or edit params.yaml)")
    return 0


def run_verify(args) -> int:
    from stvfm.models.weights import verify_file

    r = verify_file(args.file, args.backbone)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k:12s} {v}")
    return 0
