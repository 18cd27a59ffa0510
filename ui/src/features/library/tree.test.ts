import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import {
  allTags,
  emptyBranches,
  filterNodes,
  moveTargets,
  noFilter,
  orderTree,
  rootOf,
  subtreeIds,
  visibleRows,
} from "./tree";

// root(1) ─┬─ a(2) ── a1(4)
//          └─ b(3, pinned)
// other(5, pinned root)
const nodes = [
  node({ id: 4, parent: 2, name: "a1", created_at: 40, tags: ["draft"] }),
  node({ id: 1, parent: null, name: "root", created_at: 10, kind: "personality" }),
  node({ id: 2, parent: 1, name: "a", created_at: 20, tags: ["draft", "best"] }),
  node({ id: 3, parent: 1, name: "b", created_at: 30, pinned: true, kind: "story" }),
  node({ id: 5, parent: null, name: "other", created_at: 50, pinned: true, kind: "document" }),
];

describe("orderTree", () => {
  it("lists depth-first with pinned siblings first and recomputes depth", () => {
    const ordered = orderTree(nodes);
    expect(ordered.map((n) => n.name)).toEqual(["other", "root", "b", "a", "a1"]);
    expect(ordered.map((n) => n.depth)).toEqual([0, 0, 1, 1, 2]);
  });

  it("treats a node whose parent is missing as a root", () => {
    const ordered = orderTree([node({ id: 9, parent: 77, name: "orphan" })]);
    expect(ordered.map((n) => [n.name, n.depth])).toEqual([["orphan", 0]]);
  });

  it("survives a cycle in the parent links", () => {
    const ordered = orderTree([
      node({ id: 1, parent: null }),
      node({ id: 2, parent: 3 }),
      node({ id: 3, parent: 2 }),
    ]);
    expect(ordered.map((n) => n.id)).toEqual([1]);
  });
});

describe("visibleRows", () => {
  it("hides the descendants of collapsed nodes only", () => {
    const ordered = orderTree(nodes);
    expect(visibleRows(ordered, new Set([1])).map((n) => n.name)).toEqual(["other", "root"]);
    expect(visibleRows(ordered, new Set([2])).map((n) => n.name)).toEqual(["other", "root", "b", "a"]);
    expect(visibleRows(ordered, new Set()).length).toBe(5);
  });
});

describe("filterNodes", () => {
  const ordered = orderTree(nodes);
  it("filters by kind and tag, keeping tree order", () => {
    expect(filterNodes(ordered, { ...noFilter(), kind: "story" }, null).map((n) => n.name)).toEqual(["b"]);
    expect(filterNodes(ordered, { ...noFilter(), tag: "draft" }, null).map((n) => n.name)).toEqual(["a", "a1"]);
  });

  it("uses the search hits for the text", () => {
    const hits = new Set([4, 5]);
    expect(filterNodes(ordered, { ...noFilter(), text: "x" }, hits).map((n) => n.name)).toEqual(["other", "a1"]);
    expect(filterNodes(ordered, { kind: "chat", tag: null, text: "x" }, hits).map((n) => n.name)).toEqual(["a1"]);
  });
});

describe("tree helpers", () => {
  it("collects tags, roots and subtrees", () => {
    expect(allTags(nodes)).toEqual(["best", "draft"]);
    expect(rootOf(nodes, 4)).toBe(1);
    expect(rootOf(nodes, 5)).toBe(5);
    expect([...subtreeIds(nodes, 2)].sort()).toEqual([2, 4]);
  });

  it("never offers a node's own subtree as a new parent", () => {
    expect(moveTargets(nodes, 2).map((n) => n.id)).toEqual([5, 1, 3]);
  });
});

describe("emptyBranches", () => {
  it("finds whole-node forks with nothing of their own and no children", () => {
    const list = [
      node({ id: 1, parent: null, token_count: 80, own_bytes: 100 }),
      node({ id: 2, parent: 1, token_count: 80, own_bytes: 0 }), // an empty fork
      node({ id: 3, parent: 1, token_count: 80, own_bytes: 0 }), // a fork with a child
      node({ id: 4, parent: 3, token_count: 90, own_bytes: 10 }),
      node({ id: 5, parent: 1, token_count: 40, own_bytes: 0 }), // a cut: fewer tokens
      node({ id: 6, parent: null, token_count: 0, own_bytes: 0 }), // a root
    ];
    expect([...emptyBranches(list)]).toEqual([2]);
  });
});
