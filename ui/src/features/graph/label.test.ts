import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import { emptyBranches } from "../library/tree";
import { clip, metaLine, oneLine, sizeLabel, tooltip } from "./label";

describe("node labels", () => {
  it("puts the preview on one line and clips it with an ellipsis", () => {
    expect(oneLine("  Hello,\n\n  world \t!")).toBe("Hello, world !");
    expect(clip("abcdef", 10)).toBe("abcdef");
    expect(clip("abcdefghijkl", 6)).toBe("abcde…");
  });

  it("says 'empty branch' for an unfilled fork of a whole node", () => {
    const parent = node({ id: 1, token_count: 500, own_bytes: 1_000_000 });
    const fork = node({ id: 2, parent: 1, token_count: 500, own_bytes: 0 });
    // A fork that has grown, a fork with a child of its own, and a root are sized as usual.
    const grown = node({ id: 3, parent: 1, token_count: 520, own_bytes: 0 });
    const forked = node({ id: 4, parent: 1, token_count: 500, own_bytes: 0 });
    const child = node({ id: 5, parent: 4, token_count: 530, own_bytes: 2_000 });
    const root = node({ id: 6, token_count: 500, own_bytes: 0 });
    const empty = emptyBranches([parent, fork, grown, forked, child, root]);
    const label = (n: ReturnType<typeof node>) => sizeLabel(n, empty.has(n.id));
    expect([...empty]).toEqual([2]);
    expect(label(fork)).toBe("empty branch");
    expect(metaLine(fork, empty.has(fork.id))).toBe("500 tokens · empty branch");
    expect(label(grown)).toBe("0 B");
    expect(label(forked)).toBe("0 B");
    expect(label(root)).toBe("0 B");
    expect(metaLine(parent, empty.has(parent.id))).toBe("500 tokens · 1 MB");
  });

  it("gives the whole story in the tooltip", () => {
    const n = node({ name: "Tutor", preview: "A long\nanswer", token_count: 1234, own_bytes: 2_400_000 });
    expect(tooltip(n, false)).toBe("Tutor\nA long answer\n1,234 tokens · 2.4 MB");
    const other = node({ name: "Pirate", compatible: false, model_name: "Llama-2" });
    expect(tooltip(other, false)).toContain("Made with Llama-2");
  });
});
