import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import { clip, metaLine, oneLine, sharesParent, sizeLabel, tooltip } from "./label";

describe("node labels", () => {
  it("puts the preview on one line and clips it with an ellipsis", () => {
    expect(oneLine("  Hello,\n\n  world \t!")).toBe("Hello, world !");
    expect(clip("abcdef", 10)).toBe("abcdef");
    expect(clip("abcdefghijkl", 6)).toBe("abcde…");
  });

  it("says 'empty branch' for an unfilled fork of a whole node", () => {
    const parent = node({ id: 1, token_count: 500, own_bytes: 1_000_000 });
    const fork = node({ id: 2, parent: 1, token_count: 500, own_bytes: 0 });
    expect(sharesParent(fork, parent)).toBe(true);
    expect(sizeLabel(fork, parent)).toBe("empty branch");
    expect(metaLine(fork, parent)).toBe("500 tokens · empty branch");
    // A fork that has grown, an empty node, and a root are sized as usual.
    expect(sizeLabel(node({ id: 3, parent: 1, token_count: 520, own_bytes: 0 }), parent)).toBe("0 B");
    expect(sizeLabel(node({ id: 4, parent: 1, token_count: 0, own_bytes: 0 }), node({ token_count: 0 }))).toBe("0 B");
    expect(sizeLabel(node({ id: 5, token_count: 500, own_bytes: 0 }), undefined)).toBe("0 B");
    expect(metaLine(parent, undefined)).toBe("500 tokens · 1 MB");
  });

  it("gives the whole story in the tooltip", () => {
    const n = node({ name: "Tutor", preview: "A long\nanswer", token_count: 1234, own_bytes: 2_400_000 });
    expect(tooltip(n, undefined)).toBe("Tutor\nA long answer\n1,234 tokens · 2.4 MB");
    const other = node({ name: "Pirate", compatible: false, model_name: "Llama-2" });
    expect(tooltip(other, undefined)).toContain("Made with Llama-2");
  });
});
