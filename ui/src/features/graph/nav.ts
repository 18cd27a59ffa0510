// Moving the selection around the map with the keyboard, as in Loom: left to the parent, right
// into the children (back down the branch last walked), up and down through the siblings.
import type { NodeId } from "../../lib/api";
import type { GraphLayout } from "./layout";

export type Move = "parent" | "child" | "prev" | "next" | "root";

export const KEY_MOVES: Record<string, Move> = {
  ArrowLeft: "parent",
  ArrowRight: "child",
  ArrowUp: "prev",
  ArrowDown: "next",
  Home: "root",
};

/** The child of each node that the selection last came up from or went down to. */
export type Trail = Map<NodeId, NodeId>;

/** Where `move` goes from `id`; `id` itself when there is nowhere to go. */
export function step(layout: GraphLayout, id: NodeId, move: Move, trail: Trail = new Map()): NodeId {
  if (!layout.at.has(id)) return layout.roots[0] ?? id;
  const parent = layout.parent.get(id);
  switch (move) {
    case "parent":
      return parent ?? id;
    case "child": {
      const kids = layout.children.get(id) ?? [];
      const back = trail.get(id);
      return back !== undefined && kids.includes(back) ? back : (kids[0] ?? id);
    }
    case "prev":
    case "next": {
      // The roots of a stacked forest are siblings too.
      const row = parent === undefined ? layout.roots : (layout.children.get(parent) ?? []);
      const i = row.indexOf(id);
      const j = move === "prev" ? i - 1 : i + 1;
      return row[j] ?? id;
    }
    case "root":
      return pathTo(layout, id)[0];
  }
}

/** The mapped ancestors of `id` and `id` itself, root first. */
export function pathTo(layout: GraphLayout, id: NodeId): NodeId[] {
  if (!layout.at.has(id)) return [];
  const path = [id];
  const seen = new Set(path);
  for (let p = layout.parent.get(id); p !== undefined && !seen.has(p); p = layout.parent.get(p)) {
    path.push(p);
    seen.add(p);
  }
  return path.reverse();
}

/** Remembers the branch that leads to `id`, so that moving right later goes back down it. */
export function remember(trail: Trail, layout: GraphLayout, id: NodeId): void {
  const path = pathTo(layout, id);
  for (let i = 0; i + 1 < path.length; i++) trail.set(path[i], path[i + 1]);
}
