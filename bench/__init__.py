"""The SFU benchmark: load scenarios against a real server process, the
machine's floor measured in the same run, and reports under bench/results/.

Run ``python -m bench --help``; bench/README.md says what is measured and how.
"""
