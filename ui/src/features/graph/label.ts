// What a node box on the map says: its name, a line of what it holds, its tokens and size.
import type { NodeView } from "../../lib/api";
import { formatBytes, formatCompact, formatTokens } from "../../lib/format";

/** Characters that fit a line of the box (SVG text does not wrap or clip by itself). */
export const NAME_CHARS = 23;
export const PREVIEW_CHARS = 32;

/** Whitespace (newlines included) collapsed to single spaces. */
export function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

/** `s` cut to `n` characters, an ellipsis marking the cut. */
export function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1).trimEnd() + "…" : s;
}

/**
 * The node's size, or "empty branch" for one (`library/tree.ts`'s `emptyBranches`, the tree's own
 * definition): a fork of a whole node that has not grown stores nothing of its own and reuses its
 * parent's segments, so "0 B" would mislead; freezing on it fills it.
 */
export function sizeLabel(node: NodeView, emptyBranch: boolean): string {
  return emptyBranch ? "empty branch" : formatBytes(node.own_bytes);
}

/** The box's third line: `1.2k tokens · 2.4 MB`. */
export function metaLine(node: NodeView, emptyBranch: boolean): string {
  return `${formatCompact(node.token_count)} tokens · ${sizeLabel(node, emptyBranch)}`;
}

/** The tooltip: everything the box shortens, in full. */
export function tooltip(node: NodeView, emptyBranch: boolean): string {
  const preview = oneLine(node.preview);
  const model = node.compatible ? "" : `Made with ${node.model_name}`;
  return [node.name, preview, `${formatTokens(node.token_count)} · ${sizeLabel(node, emptyBranch)}`, model]
    .filter((line) => line !== "")
    .join("\n");
}
