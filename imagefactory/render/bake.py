"""The matrix as a `docker buildx bake` file (dockerfiles/docker-bake.json), committed like
the rendered Dockerfiles, so any BuildKit builder (a multi-node builder, a Kubernetes driver,
CI) builds the same images without imagefactory.

- one target per variant: context `dockerfiles/`, the rendered Dockerfile, the engine-local
  tag `<repository>:<variant>` (plus `${REGISTRY}/<repository>:<variant>` when REGISTRY is
  set), the revision build argument the builder passes, a label saying bake built it;
- `contexts` for a variant built FROM another (`base_variant`): the base comes from its own
  target (`target:<base>`), so bake builds it first. Named contexts need BuildKit >= 0.10
  (Docker >= 23 or a docker-container builder); set BASE_CONTEXTS=false on older engines and
  bake the base first (the dependant then finds it in the engine);
- one target per build stage of a multi-stage Dockerfile (`<variant>--<stage>`, group
  `<variant>-stages`): BuildKit exports a cache only when a build ends, so CI bakes the
  stages one after the other, each exporting its own cache; a run stopped by the runner's
  time limit resumes from the last stage that finished;
- registry cache when CACHE_REPO is set: every target reads all of its variant's cache refs
  (`${CACHE_REPO}:<variant>[--<stage>]`) and writes its own; CACHE_MODE `max` (all layers,
  `type=registry`, needs a builder that exports caches: docker-container, remote,
  kubernetes), `min`, `inline` (the image carries its cache: the only export the engine's
  own BuildKit, the `docker` driver, has; push the image to `${CACHE_REPO}:<variant>`) or
  `read` (import only: pull requests, which may not write the cache);
- groups: `all`, one per family (`family-<family>`), `default` = all.

Values interpolated by bake are the `${...}` expressions written here; matrix values never
contain `$` (the config loader refuses it), so none of them can inject one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..identity import BUILT_BY_LABEL, local_tag
from ..matrix.loader import Matrix, Variant
from ..project import Project
from .dockerfile import stages as dockerfile_stages
from .renderer import BuildContext

BAKE_FILE = "docker-bake.json"
REVISION_ARG = "IMAGEFACTORY_REVISION"  # the build argument the builder passes (builder.py)
_TARGET = re.compile(r"[A-Za-z0-9_-]+")
STAGE_SEPARATOR = "--"

VARIABLES: dict[str, dict[str, Any]] = {
    "REGISTRY": {"default": ""},
    "CACHE_REPO": {"default": ""},
    "CACHE_MODE": {"default": "max"},
    "BASE_CONTEXTS": {"default": True},
    REVISION_ARG: {"default": "unknown"},
}


def bake_path(project: Project) -> Path:
    return project.output_dir / BAKE_FILE


def stages(dockerfile: str) -> list[str]:
    """Named stages in order, the last (the image) excluded."""
    found = dockerfile_stages(dockerfile)
    if len(found) < 2:
        return []
    return [s.name for s in found[:-1] if s.name]


def target_name(variant: Variant, matrix: Matrix) -> str:
    name = variant.name.replace(".", "_")
    if not _TARGET.fullmatch(name):  # unreachable with the loader's name rule; guards hand-made
        raise ConfigError(str(matrix.path), variant.line, f"variants.{variant.name}",
                          "name cannot be a bake target (letters, digits, _ and - only)")
    return name


def _cache_from(refs: Sequence[str]) -> list[str]:
    return [f'${{CACHE_REPO != "" ? "type=registry,ref=${{CACHE_REPO}}:{ref}" : ""}}'
            for ref in refs]


def _cache_to(ref: str) -> list[str]:
    return [f'${{CACHE_REPO == "" || CACHE_MODE == "read" ? "" : CACHE_MODE == "inline" ? '
            f'"type=inline" : "type=registry,ref=${{CACHE_REPO}}:{ref},mode=${{CACHE_MODE}}"}}']


def bake(project: Project, contexts: Sequence[BuildContext]) -> dict[str, Any]:
    """The bake definition for every variant of `contexts` (rendered in matrix order)."""
    matrix = project.matrix
    repo_root = project.output_dir.parent
    context_dir = project.files_dir.parent
    context = os.path.relpath(context_dir, repo_root)
    by_name = {ctx.variant.name: ctx for ctx in contexts}
    targets: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    families: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for ctx in contexts:
        v = ctx.variant
        name = target_name(v, matrix)
        if name in seen:
            raise ConfigError(str(matrix.path), v.line, f"variants.{v.name}",
                              f"bake target '{name}' is also variant '{seen[name]}''s")
        seen[name] = v.name
        dockerfile = os.path.relpath(project.dockerfile_path(v), context_dir)
        stage_names = stages(ctx.dockerfile)
        refs = [f"{name}{STAGE_SEPARATOR}{s}" for s in stage_names] + [name]
        common: dict[str, Any] = {
            "context": context,
            "dockerfile": dockerfile,
            "args": {REVISION_ARG: f"${{{REVISION_ARG}}}"},
            "labels": {BUILT_BY_LABEL: "bake"},
            "cache-from": _cache_from(refs),
        }
        if v.base_variant:
            base = matrix.get(v.base_variant)
            if base.name not in by_name:
                raise ConfigError(str(matrix.path), v.line, f"variants.{v.name}.base_variant",
                                  f"base variant '{base.name}' is not in the bake file")
            common["contexts"] = {
                local_tag(matrix, base):
                    f'${{BASE_CONTEXTS ? "target:{target_name(base, matrix)}" : ""}}'}
        for stage, ref in zip(stage_names, refs, strict=False):
            targets[ref] = {**common, "target": stage, "cache-to": _cache_to(ref),
                            # a stage is built for its cache only: nothing lands in the engine
                            "output": ["type=cacheonly"]}
        tag = local_tag(matrix, v)
        targets[name] = {
            **common,
            "tags": [tag, f'${{REGISTRY != "" ? "${{REGISTRY}}/{tag}" : ""}}'],
            "cache-to": _cache_to(name),
        }
        if stage_names:
            groups[f"{name}-stages"] = {"targets": refs[:-1]}
        families.setdefault(v.family, []).append(name)
    for family, names in families.items():
        groups[f"family-{family}"] = {"targets": names}
    groups["all"] = {"targets": [target_name(ctx.variant, matrix) for ctx in contexts]}
    groups["default"] = {"targets": ["all"]}
    clash = sorted(set(groups) & set(targets))
    if clash:
        raise ConfigError(str(matrix.path), None, "variants",
                          f"bake group and target share the name '{clash[0]}'")
    return {
        "//": (f"Generated by imagefactory from {matrix.path.name}; do not edit: run "
               "`imagefactory render`. Use from the repository root: docker buildx bake -f "
               f"{os.path.relpath(bake_path(project), repo_root)} [TARGET|GROUP]"),
        "variable": VARIABLES,
        "group": groups,
        "target": targets,
    }


def bake_text(project: Project, contexts: Sequence[BuildContext]) -> str:
    return json.dumps(bake(project, contexts), indent=2) + "\n"


def write_bake(project: Project, contexts: Sequence[BuildContext]) -> bool:
    """Write the bake file; whether it changed."""
    path = bake_path(project)
    text = bake_text(project, contexts)
    from ..errors import JobError, UsageError
    from ..safety import refuse_symlinks, write_atomic

    refuse_symlinks(path, project.output_dir.parent, error=UsageError)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text, error=JobError, mode=0o644)
    return True


def bake_drifted(project: Project, contexts: Sequence[BuildContext]) -> bool:
    path = bake_path(project)
    return not path.is_file() or path.read_text(encoding="utf-8") != bake_text(project,
                                                                              contexts)
