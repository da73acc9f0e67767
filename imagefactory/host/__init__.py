"""The host machine: GPU discovery from sysfs (gpuinfo), the device nodes and groups a
container needs to reach the GPU (devices), and `imagefactory doctor`, which checks a host
and its results against the matrix. Input: the host's /sys and /dev; output: typed findings."""
