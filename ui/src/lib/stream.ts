// Accumulating streamed events into what the UI shows. Pure functions, so the components stay thin
// and the ordering rules are tested here.
import type { AltEvent, Alternative, GenEvent } from "./bindings";

/** What a generation has produced so far: prompt progress first, then text (`pieces`: how many
 * pieces of text arrived, about one per generated token). */
export type GenProgress = { text: string; done: number; total: number; pieces: number };

export const emptyGen = (): GenProgress => ({ text: "", done: 0, total: 0, pieces: 0 });

export function applyGenEvent(state: GenProgress, event: GenEvent): GenProgress {
  switch (event.kind) {
    case "text":
      return { ...state, text: state.text + event.text, pieces: state.pieces + 1 };
    case "progress":
      return { ...state, done: event.done, total: event.total };
  }
}

/** About how many tokens a running generation has added to the state so far. */
export function genTokens(g: GenProgress): number {
  return g.done + g.pieces;
}

/** One column of the story alternatives view. */
export type AltColumn = { index: number; text: string; tokens: number | null };

/** N empty columns, ready for streaming. */
export function altColumns(n: number): AltColumn[] {
  return Array.from({ length: n }, (_, index) => ({ index, text: "", tokens: null }));
}

/** Appends streamed text to the column of `event.index`, growing the list if needed. */
export function applyAltEvent(columns: AltColumn[], event: AltEvent): AltColumn[] {
  const next = columns.slice();
  while (next.length <= event.index) next.push({ index: next.length, text: "", tokens: null });
  const col = next[event.index];
  next[event.index] = { ...col, text: col.text + event.text };
  return next;
}

/** The final alternatives replace the streamed text (they are authoritative) and add counts. */
export function settleAlternatives(columns: AltColumn[], finals: Alternative[]): AltColumn[] {
  let next = columns.slice();
  for (const alt of finals) {
    while (next.length <= alt.index) next.push({ index: next.length, text: "", tokens: null });
    next[alt.index] = { index: alt.index, text: alt.text, tokens: alt.tokens };
  }
  next = next.filter((c) => c.text.length > 0 || c.tokens !== null || finals.length === 0);
  return next;
}
