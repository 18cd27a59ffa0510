import { describe, expect, it } from "vitest";
import { altColumns, applyAltEvent, applyGenEvent, emptyGen, genTokens, settleAlternatives } from "./stream";

describe("GenEvent accumulation", () => {
  it("keeps progress and appends text in arrival order", () => {
    let s = emptyGen();
    s = applyGenEvent(s, { kind: "progress", done: 10, total: 40 });
    s = applyGenEvent(s, { kind: "progress", done: 40, total: 40 });
    s = applyGenEvent(s, { kind: "text", text: "Hel" });
    s = applyGenEvent(s, { kind: "text", text: "lo" });
    expect(s).toEqual({ text: "Hello", done: 40, total: 40, pieces: 2 });
    expect(genTokens(s)).toBe(42);
  });

  it("does not mutate the previous state", () => {
    const before = emptyGen();
    applyGenEvent(before, { kind: "text", text: "x" });
    expect(before.text).toBe("");
  });
});

describe("AltEvent accumulation", () => {
  it("routes interleaved text to its column", () => {
    let cols = altColumns(3);
    cols = applyAltEvent(cols, { index: 0, text: "A" });
    cols = applyAltEvent(cols, { index: 2, text: "C" });
    cols = applyAltEvent(cols, { index: 0, text: "a" });
    cols = applyAltEvent(cols, { index: 1, text: "B" });
    expect(cols.map((c) => c.text)).toEqual(["Aa", "B", "C"]);
  });

  it("grows when an index beyond N arrives", () => {
    const cols = applyAltEvent(altColumns(1), { index: 2, text: "z" });
    expect(cols.map((c) => [c.index, c.text])).toEqual([
      [0, ""],
      [1, ""],
      [2, "z"],
    ]);
  });

  it("settles on the final alternatives, which win over streamed text", () => {
    let cols = applyAltEvent(altColumns(2), { index: 0, text: "draf" });
    cols = settleAlternatives(cols, [
      { index: 0, text: "draft", tokens: 2 },
      { index: 1, text: "other", tokens: 3 },
    ]);
    expect(cols).toEqual([
      { index: 0, text: "draft", tokens: 2 },
      { index: 1, text: "other", tokens: 3 },
    ]);
  });
});
