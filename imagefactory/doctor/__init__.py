"""The doctor: what this host, its engine, its GPUs and the test results say about running the
matrix here (a run above verify/ and host/, which it reads)."""
