import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import type { NodeView } from "../../lib/api";
import { layoutForest, layoutTree, layoutTrees, roots, SPACING, type GraphLayout } from "./layout";

const S = { colWidth: 100, rowHeight: 10, margin: 0, nodeWidth: 60, nodeHeight: 0, treeGap: 0.5 };

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

  it("keeps parent and children links as mapped", () => {
    const l = layoutTree(nodes, 1, S);
    expect(l.roots).toEqual([1]);
    expect(l.children.get(1)).toEqual([2, 3]);
    expect(l.children.get(2)).toEqual([4, 5]);
    expect(l.parent.get(4)).toBe(2);
    expect(l.parent.has(1)).toBe(false);
  });
});

describe("layoutForest", () => {
  it("stacks every root's tree below the previous one", () => {
    const l = layoutForest(nodes, S);
    expect(l.roots).toEqual([1, 9]);
    // Tree 1 takes rows 0..2, then half a row of gap, then tree 9.
    expect(pos(l)).toEqual({ 1: [0, 1.25], 2: [1, 0.5], 3: [1, 2], 4: [2, 0], 5: [2, 1], 9: [0, 3.5] });
    expect(l.height).toBe(35);
    expect(l.edges).toHaveLength(4);
  });

  it("keeps the trees apart: no node of one tree overlaps the band of another", () => {
    const l = layoutForest(forest(40, 7), SPACING);
    const bands = l.roots.map((r) => {
      const ys = l.placed.filter((p) => rootOf(l, p.node.id) === r).map((p) => p.y);
      return [Math.min(...ys) - SPACING.nodeHeight / 2, Math.max(...ys) + SPACING.nodeHeight / 2];
    });
    for (let i = 1; i < bands.length; i++) expect(bands[i][0]).toBeGreaterThan(bands[i - 1][1]);
    expectNoOverlap(l);
  });

  it("maps a subtree alone, its root in the first column", () => {
    const l = layoutTrees(nodes, [2], S);
    expect(pos(l)).toEqual({ 2: [0, 0.5], 4: [1, 0], 5: [1, 1] });
    expect(l.parent.has(2)).toBe(false);
    expect(l.edges.map((e) => [e.from, e.to])).toEqual([
      [2, 4],
      [2, 5],
    ]);
  });

  it("treats a node whose parent is missing as a root, and survives a cycle", () => {
    const odd = [node({ id: 1, parent: 99 }), node({ id: 2, parent: 3 }), node({ id: 3, parent: 2 })];
    const l = layoutForest(odd, S);
    expect(l.placed.map((p) => p.node.id)).toEqual([1]);
  });
});

// ---- size: a regression guard for big libraries (bounds generous: a busy 2-core machine) ----

/** `count` nodes in `trees` trees, each node under a pseudo-random earlier node of its tree. */
function forest(count: number, trees: number): NodeView[] {
  const out: NodeView[] = [];
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let id = 1; id <= count; id++) {
    const tree = (id - 1) % trees;
    const earlier = out.filter((_, i) => i % trees === tree && i < id - 1);
    const parent = id <= trees ? null : earlier[Math.floor(rand() * earlier.length)].id;
    out.push(node({ id, parent, created_at: id }));
  }
  return out;
}

/** A wide and deep mix: a chain `depth` long, each link with `fan` leaves, plus a wide root. */
function chainAndFan(depth: number, fan: number, wide: number): NodeView[] {
  const out: NodeView[] = [];
  let id = 1;
  out.push(node({ id: id++, parent: null, created_at: 0 }));
  for (let d = 1; d < depth; d++) {
    const parent = id - 1 - (d === 1 ? 0 : fan);
    out.push(node({ id: id++, parent, created_at: id }));
    for (let f = 0; f < fan; f++) out.push(node({ id: id++, parent, created_at: id }));
  }
  const wideRoot = id++;
  out.push(node({ id: wideRoot, parent: null, created_at: id }));
  for (let w = 0; w < wide; w++) out.push(node({ id: id++, parent: wideRoot, created_at: id }));
  return out;
}

function rootOf(l: GraphLayout, id: number): number {
  let cur = id;
  for (let p = l.parent.get(cur); p !== undefined; p = l.parent.get(cur)) cur = p;
  return cur;
}

/** Boxes in a column are at least a row apart; columns are further apart than a box is wide. */
function expectNoOverlap(l: GraphLayout, s = SPACING) {
  expect(s.colWidth).toBeGreaterThan(s.nodeWidth);
  const sorted = [...l.placed].sort((a, b) => a.col - b.col || a.y - b.y);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1], sorted[i]];
    if (a.col !== b.col) continue;
    expect(b.y - a.y, `nodes ${a.node.id} and ${b.node.id} overlap`).toBeGreaterThanOrEqual(s.nodeHeight);
  }
}

describe("layout of a big library", () => {
  // No time bounds here: speed is checked by benchmarks, not by timed unit tests.
  it("lays out 1,000 nodes with no two boxes overlapping", () => {
    const many = forest(1000, 5);
    const l = layoutForest(many);
    expect(l.placed).toHaveLength(1000);
    expect(l.edges).toHaveLength(995);
    // The brute-force check too, for the boxes as drawn.
    const boxes = l.placed.map((p) => [p.x, p.y - SPACING.nodeHeight / 2, p.node.id] as const);
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++) {
        const [ax, ay] = boxes[i];
        const [bx, by] = boxes[j];
        const apart = Math.abs(ax - bx) >= SPACING.nodeWidth || Math.abs(ay - by) >= SPACING.nodeHeight;
        if (!apart) expect.fail(`nodes ${boxes[i][2]} and ${boxes[j][2]} overlap`);
      }
  });

  it("lays out 5,000 nodes of deep chains and wide fans", () => {
    const mix = chainAndFan(1000, 3, 1000);
    expect(mix.length).toBe(4998);
    const l = layoutForest(mix);
    expect(l.placed).toHaveLength(mix.length);
    expectNoOverlap(l);
  });

  it("walks a chain 3,000 levels deep without running out of stack", () => {
    const chain = Array.from({ length: 3000 }, (_, i) => node({ id: i + 1, parent: i === 0 ? null : i, created_at: i }));
    const l = layoutTree(chain, 1);
    expect(l.placed).toHaveLength(3000);
    expect(l.at.get(3000)!.col).toBe(2999);
    expect(l.width).toBe(SPACING.margin * 2 + 2999 * SPACING.colWidth + SPACING.nodeWidth);
  });
});
