// Time left for document processing, estimated in the UI from the progress events' pace.
import { formatCount, formatSeconds, percent } from "../../lib/format";

export type Sample = { at: number; done: number };

/** Keeps the first sample (the pace is measured from there) and the latest. */
export function addSample(samples: Sample[], s: Sample): Sample[] {
  return samples.length === 0 ? [s] : [samples[0], s];
}

/** Seconds left at the pace since the first sample, or null until there is a pace to go by. */
export function secondsLeft(samples: Sample[], total: number): number | null {
  if (samples.length < 2) return null;
  const first = samples[0];
  const last = samples[samples.length - 1];
  const elapsed = (last.at - first.at) / 1000;
  const gained = last.done - first.done;
  if (elapsed <= 0 || gained <= 0) return null;
  return Math.max(0, (total - last.done) / (gained / elapsed));
}

/** "12,000 / 40,000 tokens · 30% · about 2 min left". */
export function progressLabel(done: number, total: number, left: number | null): string {
  const parts = [`${formatCount(done)} / ${formatCount(total)} tokens`, `${percent(done, total)}%`];
  if (done >= total && total > 0) parts.push("finishing");
  else parts.push(left === null ? "estimating time left" : `about ${formatSeconds(left)} left`);
  return parts.join(" · ");
}
