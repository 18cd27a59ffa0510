import { describe, expect, it } from "vitest";
import { addSample, progressLabel, secondsLeft } from "./progress";

describe("time left", () => {
  it("needs two samples and some progress", () => {
    expect(secondsLeft([], 100)).toBeNull();
    expect(secondsLeft([{ at: 0, done: 0 }], 100)).toBeNull();
    expect(secondsLeft([{ at: 0, done: 10 }, { at: 1000, done: 10 }], 100)).toBeNull();
  });

  it("extrapolates the pace since the first sample", () => {
    let s = addSample([], { at: 0, done: 0 });
    s = addSample(s, { at: 1000, done: 100 });
    s = addSample(s, { at: 2000, done: 200 });
    expect(s).toHaveLength(2);
    expect(secondsLeft(s, 1000)).toBe(8);
  });

  it("labels progress", () => {
    expect(progressLabel(12000, 40000, 125)).toBe("12,000 / 40,000 tokens · 30% · about 2 min 5 s left");
    expect(progressLabel(0, 40000, null)).toBe("0 / 40,000 tokens · 0% · estimating time left");
    expect(progressLabel(40000, 40000, 0)).toBe("40,000 / 40,000 tokens · 100% · finishing");
  });
});
