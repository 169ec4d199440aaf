from indexing.cli import build_parser, main

main(build_parser().parse_args())
