import { describe, expect, it } from "vitest";
import {
  formatBytes,
  formatCompact,
  formatCount,
  formatMillis,
  formatSeconds,
  formatTokens,
  percent,
} from "./format";

describe("format", () => {
  it("groups counts and pluralises tokens", () => {
    expect(formatCount(1234)).toBe("1,234");
    expect(formatTokens(1)).toBe("1 token");
    expect(formatTokens(0)).toBe("0 tokens");
    expect(formatTokens(1234567)).toBe("1,234,567 tokens");
  });

  it("shortens large counts for narrow columns", () => {
    expect(formatCompact(950)).toBe("950");
    expect(formatCompact(1000)).toBe("1k");
    expect(formatCompact(12_345)).toBe("12.3k");
    expect(formatCompact(123_456)).toBe("123k");
    expect(formatCompact(1_200_000)).toBe("1.2M");
  });

  it("writes bytes in decimal units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(999)).toBe("999 B");
    expect(formatBytes(1000)).toBe("1 KB");
    expect(formatBytes(1_500_000)).toBe("1.5 MB");
    expect(formatBytes(4_370_000_000)).toBe("4.4 GB");
    expect(formatBytes(250_000_000)).toBe("250 MB");
    expect(formatBytes(-1)).toBe("–");
  });

  it("writes timings", () => {
    expect(formatMillis(12.4)).toBe("12 ms");
    expect(formatMillis(1530)).toBe("1.5 s");
    expect(formatMillis(95_000)).toBe("1 min 35 s");
    expect(formatSeconds(42)).toBe("42 s");
    expect(formatSeconds(120)).toBe("2 min");
    expect(formatSeconds(3720)).toBe("1 h 2 min");
    expect(formatSeconds(-5)).toBe("0 s");
  });

  it("clamps percentages", () => {
    expect(percent(1, 4)).toBe(25);
    expect(percent(5, 4)).toBe(100);
    expect(percent(1, 0)).toBe(0);
  });
});
