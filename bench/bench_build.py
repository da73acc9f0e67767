"""No-change build cost: `imagefactory build` against a plain `docker build` of the same
rendered context with a warm cache, measured in the same run, printed as ratios.

1. the real `cpu` variant (its config copied under a unique repository name, so the bench
   never moves the shared `imagefactory:cpu` tag);
2. `build --all` of the fixture matrix (tests/fixtures/buildmatrix, copied under a unique
   repository name whose images are removed at the end).
Plain docker: the `docker build` CLI with the classic builder (what imagefactory drives, so
both use the same layer cache) on the rendered context laid out in a folder, and docker-py's
`api.build` of the same in-memory tar. Target: imagefactory adds under 30% over plain docker.
The CLI floor is `imagefactory list` (interpreter, click, YAML, config: no engine, no render);
a no-change build cannot be faster than that. Python's own start-up is printed too.
Usage: python3 bench/bench_build.py [--runs N]  (run it from an older checkout for "before")
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This checkout's imagefactory, in here and in every CLI run (whatever their cwd), not the
# installed one: run from an older checkout, the bench measures that code.
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                          os.environ.get("PYTHONPATH")]))
FIXTURE = REPO / "tests" / "fixtures" / "buildmatrix"
CLI = [sys.executable, "-c", "from imagefactory.cli import main; main()"]


def median(fn: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def plain_docker(contexts, workdir: Path, client) -> tuple[Callable[[], None],
                                                           Callable[[], None]]:
    """Two plain builds of the same contexts: the docker CLI and docker-py."""
    from imagefactory.render.context import context_tar

    dirs = []
    for ctx in contexts:
        d = workdir / ctx.variant.name
        d.mkdir(parents=True)
        ctx.write(d)
        dirs.append(d)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, like docker-py's API
    tars = [context_tar(ctx) for ctx in contexts]

    def cli() -> None:
        for d in dirs:
            run(["docker", "build", "-q", "."], d, env)

    def api() -> None:
        for data in tars:
            for chunk in client.api.build(fileobj=data, custom_context=True, rm=True,
                                          decode=True):
                if "error" in chunk:
                    sys.exit(f"bench: docker-py build failed: {chunk['error']}")

    return cli, api


def skip_in_process(project, names, client) -> None:
    """What `build` does per variant when nothing changed, without the CLI start-up: render,
    then the skip decision against the engine."""
    from imagefactory.build.builder import Builder, BuildOptions
    from imagefactory.engine.docker_engine import DockerEngine
    from imagefactory.events import discard
    from imagefactory.render.renderer import Renderer

    renderer = Renderer(project)
    variants = project.matrix.select(names)
    contexts = {v.name: renderer.render(v) for v in variants}
    builder = Builder(project.matrix, contexts, {"e": DockerEngine(client=client)},
                      BuildOptions(log_dir=Path(tempfile.gettempdir())),
                      discard)  # the bench times the decision, not the printing
    results = {}
    for v in variants:
        results[v.name] = builder.run(v, "e", results.get(v.base_variant or ""))
        if results[v.name].status != "skipped":
            sys.exit(f"bench: {v.name} was not up to date: {results[v.name]}")


def report(title: str, tool: float, cli: float, api: float, floor: float,
           inproc: float, python: float) -> None:
    print(f"{title}")
    print(f"  imagefactory build (no change)  {tool * 1000:8.1f} ms   of which CLI start "
          f"(`imagefactory list`) {floor * 1000:.1f} ms (bare python {python * 1000:.1f} ms), "
          f"build's own {(tool - floor) * 1000:.1f} ms")
    print(f"  in-process skip decision        {inproc * 1000:8.1f} ms   (render + inspect, "
          f"ratio {inproc / api:4.2f}x of docker-py)")
    print(f"  docker build CLI (warm cache)   {cli * 1000:8.1f} ms   ratio {tool / cli:5.2f}x")
    print(f"  docker-py api.build (warm)      {api * 1000:8.1f} ms   ratio {tool / api:5.2f}x")
    verdict = "ok" if tool <= 1.3 * min(cli, api) else "OVER the 30% target"
    print(f"  overhead vs the faster plain build: {(tool / min(cli, api) - 1) * 100:+.0f}% "
          f"({verdict}); the CLI floor alone is {(floor / min(cli, api) - 1) * 100:+.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    import docker

    from imagefactory.project import Project
    from imagefactory.render.renderer import Renderer

    client = docker.from_env()
    floor_argv = [*CLI, "list"]
    python = median(lambda: run([sys.executable, "-c", "pass"], REPO), runs)
    work = Path(tempfile.mkdtemp(prefix="iftest-bench-build-"))
    repository = f"iftest-bench-build-{uuid.uuid4().hex[:8]}"
    try:
        # 1. the cpu variant: the repository's matrix under our own repository name (the
        # templates and in-image files are still the repository's own)
        cpu_dir = work / "cpu-config"
        cpu_dir.mkdir()
        config = cpu_dir / "variants.yaml"
        text = (REPO / "variants.yaml").read_text()
        assert "\nrepository: imagefactory\n" in text
        config.write_text(text.replace("\nrepository: imagefactory\n",
                                       f"\nrepository: {repository}\n"))
        project = Project.locate(config)
        ctx = Renderer(project).render(project.matrix.get("cpu"))
        tool_argv = [*CLI, "--config", str(config), "build", "cpu", "--progress", "quiet",
                     "--log-dir", str(work / "l")]
        run(tool_argv, cpu_dir)  # warm: built (from the layer cache) or found up to date
        cli, api = plain_docker([ctx], work / "cpu", client)
        cli(), api()  # warm the plain builds' cache too
        cpu_floor = [*CLI, "--config", str(config), "list"]
        report("cpu variant", median(lambda: run(tool_argv, cpu_dir), runs), median(cli, runs),
               median(api, runs), median(lambda: run(cpu_floor, cpu_dir), runs),
               median(lambda: skip_in_process(project, ["cpu"], client), runs), python)

        # 2. the fixture matrix, --all
        root = work / "matrix"
        shutil.copytree(FIXTURE, root)
        config = root / "variants.yaml"
        config.write_text(config.read_text().replace("repository: iftest-build",
                                                     f"repository: {repository}"))
        tool_argv = [*CLI, "build", "--all", "--progress", "quiet", "--log-dir",
                     str(work / "l")]
        run(tool_argv, root)
        fixture = Project.locate(config)
        contexts = [Renderer(fixture).render(v) for v in fixture.matrix.variants]
        cli, api = plain_docker(contexts, work / "fixture", client)
        cli(), api()
        report(f"fixture matrix, build --all ({len(contexts)} variants)",
               median(lambda: run(tool_argv, root), runs), median(cli, runs),
               median(api, runs), median(lambda: run(floor_argv, root), runs),
               median(lambda: skip_in_process(fixture, fixture.matrix.names, client), runs),
               python)
    finally:
        for _ in range(2):  # dependants, then bases
            for image in client.images.list(name=repository):
                for tag in image.tags:
                    if tag.startswith(repository + ":"):
                        with contextlib.suppress(docker.errors.APIError):
                            client.images.remove(tag)  # a base still used: next round
        shutil.rmtree(work, ignore_errors=True)
        client.close()


if __name__ == "__main__":
    main()
