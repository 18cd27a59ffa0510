import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import { layoutTree, roots } from "./layout";

const S = { colWidth: 100, rowHeight: 10, margin: 0, nodeWidth: 60 };

// 1 ─┬─ 2 ─┬─ 4
//    │     └─ 5
//    └─ 3
// 9 (another tree)
const nodes = [
  node({ id: 1, parent: null, created_at: 1 }),
  node({ id: 2, parent: 1, created_at: 2 }),
  node({ id: 3, parent: 1, created_at: 3 }),
  node({ id: 4, parent: 2, created_at: 4 }),
  node({ id: 5, parent: 2, created_at: 5 }),
  node({ id: 9, parent: null, created_at: 9 }),
];

const pos = (l: ReturnType<typeof layoutTree>) =>
  Object.fromEntries(l.placed.map((p) => [p.node.id, [p.col, p.row]]));

describe("layoutTree", () => {
  it("puts depth on x, one row per leaf, parents centred on their children", () => {
    const l = layoutTree(nodes, 1, S);
    expect(pos(l)).toEqual({ 1: [0, 1.25], 2: [1, 0.5], 3: [1, 2], 4: [2, 0], 5: [2, 1] });
  });

  it("maps only the chosen tree", () => {
    const l = layoutTree(nodes, 9, S);
    expect(l.placed.map((p) => p.node.id)).toEqual([9]);
    expect(l.edges).toEqual([]);
  });

  it("draws one edge per parent link, from parent to child", () => {
    const l = layoutTree(nodes, 1, S);
    expect(l.edges.map((e) => [e.from, e.to]).sort()).toEqual([
      [1, 2],
      [1, 3],
      [2, 4],
      [2, 5],
    ]);
    const e = l.edges.find((x) => x.to === 4)!;
    expect(e.path.startsWith("M 160 5")).toBe(true);
    expect(e.path.endsWith("200 0")).toBe(true);
  });

  it("sizes the canvas to the tree", () => {
    const l = layoutTree(nodes, 1, S);
    expect(l.width).toBe(260);
    expect(l.height).toBe(20);
  });

  it("returns an empty layout for an unknown root", () => {
    expect(layoutTree(nodes, 42, S).placed).toEqual([]);
  });

  it("lists roots", () => {
    expect(roots(nodes).map((n) => n.id)).toEqual([1, 9]);
  });
});
