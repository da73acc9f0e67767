"""Variant -> rendered build context (Dockerfile text + the in-image files it COPYs)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, JobError, UsageError
from ..identity import HASH_LABEL, image_labels, local_tag
from ..identity import declared_version as image_version
from ..matrix.loader import Matrix, Variant
from ..project import Project
from ..safety import refuse_symlinks, write_atomic
from .rocm_apt import apt_suite_for

if TYPE_CHECKING:
    import jinja2


@dataclass(frozen=True)
class BuildContext:
    """Everything a build needs and nothing else: the Dockerfile and the files it COPYs."""

    variant: Variant
    dockerfile: str
    files: tuple[tuple[str, Path], ...]  # (path inside the context, file on disk), sorted
    inputs_hash: str

    @property
    def size(self) -> int:
        return len(self.dockerfile.encode()) + sum(src.stat().st_size for _, src in self.files)

    def write(self, directory: Path) -> None:
        """Lay the context out on disk (for plain `docker build DIR` and for hadolint)."""
        (directory / "Dockerfile").write_text(self.dockerfile, encoding="utf-8")
        for rel, src in self.files:
            dest = directory / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
            dest.chmod(src.stat().st_mode & 0o777)


@cache
def _none_is_undefined_env() -> type[jinja2.Environment]:
    import jinja2  # here, not at import time: importers of BuildContext do without it

    class NoneIsUndefined(jinja2.Environment):
        """An unset optional field (None) reads as undefined, so StrictUndefined makes a
        template that prints it fail instead of writing `None` into the Dockerfile."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            value = super().getattr(obj, attribute)
            return self._unset(obj, attribute) if value is None else value

        def getitem(self, obj: Any, argument: Any) -> Any:
            value = super().getitem(obj, argument)
            return self._unset(obj, argument) if value is None else value

        def _unset(self, obj: Any, name: Any) -> jinja2.Undefined:
            return self.undefined(hint=f"'{name}' is not set ({type(obj).__name__}.{name})",
                                  obj=obj, name=name)

    return NoneIsUndefined


class Renderer:
    """Renders variants through the project's Jinja2 templates, deterministically."""

    def __init__(self, project: Project) -> None:
        self.project = project

    @cached_property
    def env(self) -> jinja2.Environment:
        import jinja2  # on the first render: importers of BuildContext (builder) do without

        return _none_is_undefined_env()(
            loader=jinja2.FileSystemLoader(str(self.project.templates_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,  # Dockerfiles, not HTML; config validates every value
        )

    @property
    def matrix(self) -> Matrix:
        return self.project.matrix

    def render(self, variant: Variant) -> BuildContext:
        # The hash covers the Dockerfile (minus the hash itself) and every file it COPYs, so
        # render once without it, hash, then render the final text with it.
        files, inputs_hash = self.inputs(variant, self.draft(variant))
        return BuildContext(variant, self._text(variant, inputs_hash), files, inputs_hash)

    def draft(self, variant: Variant) -> str:
        """The Dockerfile with an empty inputs hash: what the hash covers."""
        return self._text(variant, inputs_hash="")

    def inputs(self, variant: Variant, draft: str) -> tuple[tuple[tuple[str, Path], ...], str]:
        """The files `draft` COPYs and the inputs hash: the hash of the very tar stream the
        engine would get with `draft` as its Dockerfile, so it covers exactly the bytes and
        the modes (the executable bit) that are sent, and nothing else."""
        from .context import context_tar

        files = self._context_files(variant, draft)
        tar = context_tar(BuildContext(variant, draft, files, ""))
        return files, hashlib.sha256(tar).hexdigest()

    def _text(self, variant: Variant, inputs_hash: str) -> str:
        import jinja2

        template_name = type(variant.recipe).template_name()
        try:
            template = self.env.get_template(template_name)
            return template.render(**self._context(variant, inputs_hash))
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(str(self.matrix.path), variant.line, f"variants.{variant.name}"
                              ".family", f"no template {exc.name}") from None
        except jinja2.UndefinedError as exc:
            # Named where the variant is declared: what it lacks is set (or not) there.
            raise ConfigError(variant.file, variant.line, f"variants.{variant.name}",
                              f"template {template_name} needs a value this variant does not "
                              f"set: {exc.message}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(str(exc.filename or template_name), exc.lineno, "",
                              f"template syntax error: {exc.message}") from None

    def _context(self, variant: Variant, inputs_hash: str) -> dict[str, object]:
        matrix = self.matrix
        if variant.base_variant:
            from_ref = local_tag(matrix, matrix.get(variant.base_variant))
        else:
            assert variant.base is not None  # config guarantees one of the two
            from_ref = variant.base.ref
        return {
            "v": variant,
            "matrix": matrix,
            "from_ref": from_ref,
            "image_version": image_version(variant),
            "labels": image_labels(variant, matrix, inputs_hash),
            "runtime_env": variant.runtime_env(),
            "hash_label": HASH_LABEL,
            # repo.radeon.com apt distribution of the variant's ROCm lines (one rule in Python)
            "rocm_apt_suite": apt_suite_for(variant, str(matrix.path)),
        }

    def _context_files(self, variant: Variant, dockerfile: str) -> tuple[tuple[str, Path], ...]:
        from .context import confined_files
        from .dockerfile import DockerfileError, context_sources

        where = str(self.project.templates_dir / type(variant.recipe).template_name())
        try:
            sources = context_sources(dockerfile)
        except DockerfileError as exc:
            raise ConfigError(where, None, f"variants.{variant.name}",
                              f"rendered Dockerfile: {exc}") from None
        return confined_files(self.project.files_dir, sources, where)


def copy_sources(dockerfile: str) -> list[str]:
    """Build-context sources of COPY/ADD instructions (not `--from` stage copies), read with
    Docker's line rules (render/dockerfile.py)."""
    from .dockerfile import context_sources

    return [source for _, source in context_sources(dockerfile)]


def write_rendered(project: Project, contexts: list[BuildContext]) -> list[Path]:
    """Write each context's Dockerfile to dockerfiles/<variant>/Dockerfile; return changed."""
    changed = []
    for ctx in contexts:
        path = project.dockerfile_path(ctx.variant)
        refuse_symlinks(path, project.output_dir.parent, error=UsageError)
        if not path.is_file() or path.read_text(encoding="utf-8") != ctx.dockerfile:
            write_atomic(path, ctx.dockerfile, error=JobError, mode=0o644)
            changed.append(path)
    return changed


def drifted(project: Project, contexts: list[BuildContext]) -> list[Path]:
    """Rendered files that differ from (or are missing against) what the templates produce."""
    out = []
    for ctx in contexts:
        path = project.dockerfile_path(ctx.variant)
        if not path.is_file() or path.read_text(encoding="utf-8") != ctx.dockerfile:
            out.append(path)
    return out
