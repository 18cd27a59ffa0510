import { describe, expect, it } from "vitest";
import { thawReport } from "../../test/fixtures";
import { thawSummary } from "./thaw-summary";

describe("thawSummary", () => {
  it("says full reuse when nothing was re-processed", () => {
    expect(thawSummary(thawReport({ millis: 12, reused_tokens: 1234 }), "Ada")).toBe(
      "thawed Ada in 12 ms · full reuse of 1,234 tokens · from memory",
    );
  });

  it("always states re-processing", () => {
    const r = thawReport({ millis: 1530, reused_tokens: 1000, reprocessed_tokens: 234, from_memory: false });
    expect(thawSummary(r, "Ada", "forked")).toBe(
      "forked Ada in 1.5 s · reused 1,000, re-processed 234 tokens · from disk",
    );
  });
});
