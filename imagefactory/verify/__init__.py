"""Stage 4, verification: runs a built image (BuiltImage) in a container with the GPU, runs the
in-package testinfra suite (suite/) and the in-image conv check against it, and writes one
TestResult per variant (results/<variant>.json)."""
