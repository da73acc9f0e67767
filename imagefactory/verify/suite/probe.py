"""Runs INSIDE the container (python3 -c, the source of this file): gathers every fact the
suite checks in one interpreter start, since each `docker exec` plus `import torch` costs
about a second. Standard library only; prints one JSON object. Argument: a JSON object
{"files": [...], "devices": [...], "env": [...]}."""

import importlib.util
import json
import os
import platform
import stat
import sys
import tempfile


def _device(path):
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"exists": False, "error": exc.strerror}
    out = {"exists": True, "char": stat.S_ISCHR(st.st_mode), "gid": st.st_gid,
           "mode": oct(st.st_mode & 0o777)}
    try:
        os.close(os.open(path, os.O_RDWR))
        out["opens"] = True
    except OSError as exc:
        out["opens"] = False
        out["error"] = exc.strerror
    return out


def _writable(directory):
    try:
        with tempfile.NamedTemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def main():
    want = json.loads(sys.argv[1])
    facts = {
        "python": platform.python_version(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
        "home": os.environ.get("HOME"),
        "home_writable": _writable(os.environ.get("HOME", "/nonexistent")),
        "env": {k: os.environ.get(k) for k in want["env"]},
        "files": {p: os.path.exists(p) for p in want["files"]},
        "executables": {p: os.access(p, os.X_OK) for p in want.get("executables", [])},
        "devices": {p: _device(p) for p in want["devices"]},
        "convcheck": None,
    }
    spec = importlib.util.find_spec("convcheck")
    facts["convcheck"] = spec.origin if spec else None
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["hip"] = getattr(torch.version, "hip", None)
        facts["torch_computes"] = float(torch.ones(4, 4).matmul(torch.ones(4, 4)).sum()) == 64.0
    except Exception as exc:  # report whatever broke the import
        facts["torch_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(facts))


main()
