"""imagefactory's sitecustomize: installs the im2col convolution fallback in any Python
process of the image that has IMAGEFACTORY_CONV_IM2COL=1, without the user changing code.

PYTHONPATH=/opt/imagefactory/python puts this file ahead of the distribution's own
sitecustomize (Debian and Ubuntu ship /usr/lib/python3.X/sitecustomize.py, which installs
apport's hook), so that one is looked up further down sys.path and run too.

Cheap when the variable is unset: nothing but that lookup. When set, torch is not imported
here either: a one-shot import hook waits for the program's own `import torch` and patches
torch.nn.functional.conv2d right after torch has loaded. `python3 -I`/`-E` ignore PYTHONPATH
and so this file.
"""

import os
import sys


def _chain_shadowed() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if p and os.path.abspath(p) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_imagefactory_shadowed_sitecustomize"] = module
    spec.loader.exec_module(module)


class _TorchImportHook:
    """Meta path finder that lets `torch` load normally, then installs the fallback."""

    def __init__(self) -> None:
        self.busy = False

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "torch" or self.busy:
            return None
        import importlib.util

        self.busy = True  # find_spec below consults sys.meta_path again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module: object) -> None:
            load(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _install_fallback()

        spec.loader.exec_module = exec_module
        return spec


def _install_fallback() -> None:
    try:
        import im2col_fallback

        im2col_fallback.install()
    except Exception as exc:  # never break the user's `import torch`
        sys.stderr.write(f"imagefactory: im2col fallback not installed: {exc!r}\n")


def _main() -> None:
    try:
        _chain_shadowed()
    except Exception as exc:
        sys.stderr.write(f"imagefactory: the system sitecustomize failed: {exc!r}\n")
    value = os.environ.get("IMAGEFACTORY_CONV_IM2COL", "").strip().lower()
    if value not in ("", "0", "false", "no", "off"):
        if "torch" in sys.modules:
            _install_fallback()
        else:
            sys.meta_path.insert(0, _TorchImportHook())


_main()
