"""Benchmarks of keras-dcn's ops (`make bench`)."""
