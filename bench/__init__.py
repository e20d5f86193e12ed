"""poulpe's bench: `./bench/run.sh` (or `python -m bench`) measures and writes docs/BENCHMARKS.md."""
