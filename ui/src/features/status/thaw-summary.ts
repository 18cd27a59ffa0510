// The status bar's account of a thaw: how long it took and whether the prefix was reused in full.
// Re-processing is always said out loud, never hidden.
import type { ThawReport } from "../../lib/api";
import { formatCount, formatMillis } from "../../lib/format";

export function thawSummary(report: ThawReport, name: string, verb = "thawed"): string {
  const reuse =
    report.reprocessed_tokens === 0
      ? `full reuse of ${formatCount(report.reused_tokens)} tokens`
      : `reused ${formatCount(report.reused_tokens)}, re-processed ${formatCount(report.reprocessed_tokens)} tokens`;
  const source = report.from_memory ? "from memory" : "from disk";
  return `${verb} ${name} in ${formatMillis(report.millis ?? 0)} · ${reuse} · ${source}`;
}
