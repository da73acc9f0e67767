"""Built image -> TestResult: the testinfra suite, the conv check and the GPU code audit."""
