import { describe, expect, it } from "vitest";
import { node } from "../../test/fixtures";
import { layoutForest, layoutTree } from "./layout";
import { pathTo, remember, step, type Trail } from "./nav";

// 1 ─┬─ 2 ─┬─ 4
//    │     └─ 5
//    └─ 3
// 9
const nodes = [
  node({ id: 1, created_at: 1 }),
  node({ id: 2, parent: 1, created_at: 2 }),
  node({ id: 3, parent: 1, created_at: 3 }),
  node({ id: 4, parent: 2, created_at: 4 }),
  node({ id: 5, parent: 2, created_at: 5 }),
  node({ id: 9, created_at: 9 }),
];

describe("keyboard moves", () => {
  const l = layoutForest(nodes);

  it("goes to the parent, the first child, and the siblings", () => {
    expect(step(l, 4, "parent")).toBe(2);
    expect(step(l, 1, "parent")).toBe(1);
    expect(step(l, 1, "child")).toBe(2);
    expect(step(l, 4, "child")).toBe(4);
    expect(step(l, 2, "next")).toBe(3);
    expect(step(l, 3, "next")).toBe(3);
    expect(step(l, 3, "prev")).toBe(2);
    expect(step(l, 5, "root")).toBe(1);
  });

  it("moves between the roots of a stacked forest", () => {
    expect(step(l, 1, "next")).toBe(9);
    expect(step(l, 9, "prev")).toBe(1);
  });

  it("goes back down the branch last walked", () => {
    const trail: Trail = new Map();
    remember(trail, l, 5);
    expect(step(l, 1, "child", trail)).toBe(2);
    expect(step(l, 2, "child", trail)).toBe(5);
  });

  it("stays inside a mapped subtree", () => {
    const sub = layoutTree(nodes, 2);
    expect(step(sub, 2, "parent")).toBe(2);
    expect(step(sub, 2, "next")).toBe(2);
    expect(pathTo(sub, 5)).toEqual([2, 5]);
  });

  it("lists the path from the root", () => {
    expect(pathTo(l, 5)).toEqual([1, 2, 5]);
    expect(pathTo(l, 42)).toEqual([]);
  });
});
