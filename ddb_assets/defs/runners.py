"""The shard runners inside a Dagster run: the glue and emr_serverless runners' job runs started and
followed by dagster-aws's Pipes clients, so the jobs' messages and logs reach the run. Every asset
that converts or reads an export on a runner (raw_export, the lake table) completes its options here."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from ddb_assets.lake.convert import ConvertOptions


def with_pipes_launchers(context: dg.AssetExecutionContext | dg.OpExecutionContext,
                         options: ConvertOptions) -> ConvertOptions:
    """``options`` with the launcher its runner needs from the asset's ``context`` (glue:
    ``glue_launcher``; emr_serverless: ``emr_launcher``); unchanged for the local and spark runners."""
    runner = options.runner
    if runner.kind == "glue":
        from ddb_assets.defs.glue_pipes import pipes_glue_launcher

        return replace(options, runner=replace(runner, glue_launcher=pipes_glue_launcher(context, runner.staging,
                                                                                         options.s3)))
    if runner.kind == "emr_serverless":
        from ddb_assets.defs.emr_pipes import pipes_emr_serverless_launcher

        # The driver's output reaches the run through CloudWatch Logs.
        return replace(options, runner=replace(runner, emr_launcher=pipes_emr_serverless_launcher(context,
                                                                                                  options.s3)))
    return options


__all__ = ["with_pipes_launchers"]
