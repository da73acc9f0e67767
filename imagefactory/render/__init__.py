"""Stage 2, rendering: turns a Variant and the project's Jinja templates into a BuildContext
(the Dockerfile text plus the files it COPYs, and the inputs hash that identifies them), the
build context tarball sent to the engine, and the generated CI matrix."""
