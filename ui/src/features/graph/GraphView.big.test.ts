// A library of 1,000 nodes: the map draws what is on screen, not all of it, and the keyboard
// still reaches every node (the map pans to follow the selection).
import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { NodeView } from "../../lib/api";
import { fakeBackend } from "../../test/backend";
import { hostStatus, live, node, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import GraphView from "./GraphView.svelte";

/** 10 trees of 100: a trunk 50 deep, each trunk node with a later side branch. */
function library(count = 1000, trees = 10): NodeView[] {
  return Array.from({ length: count }, (_, i) => {
    const id = i + 1;
    const tree = i % trees;
    const j = Math.floor(i / trees); // position in its tree
    const parentPos = j === 0 ? null : j < 50 ? j - 1 : j - 50;
    const parent = parentPos === null ? null : parentPos * trees + tree + 1;
    return node({ id, parent, created_at: id, preview: `text of ${id}` });
  });
}

describe("GraphView with 1,000 nodes", () => {
  it("renders only what is on screen, and the arrows walk the whole tree", async () => {
    const user = userEvent.setup();
    const nodes = library();
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ node: 1 }) }),
      list_tree: () => nodes,
      thaw: ({ node }) => thawReport({ node: node as number, live: live({ node: node as number }) }),
    });
    const app = await readyApp();
    app.session.view = "graph";

    renderWithApp(GraphView, {}, app);
    const svg = screen.getByTestId("graph-svg");

    expect(svg).toHaveAttribute("data-culled", "true");
    const drawn = svg.querySelectorAll("[data-node]").length;
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThan(200);
    expect(screen.getByTestId("graph-node-1")).toHaveClass("current");

    // Down the first tree as deep as it goes, then to the last tree's root: each step stays drawn.
    svg.focus();
    let depth = 0;
    for (;;) {
      const before = app.library.selected;
      await user.keyboard("{ArrowRight}");
      if (app.library.selected === before) break;
      depth++;
      expect(screen.getByTestId(`graph-node-${app.library.selected}`)).toHaveClass("selected");
    }
    expect(depth).toBe(50); // down the trunk (49 steps), then its last side branch
    await user.keyboard("{Home}");
    expect(app.library.selected).toBe(1);
    for (let i = 0; i < 9; i++) await user.keyboard("{ArrowDown}");
    expect(app.library.selected).toBe(10);
    expect(screen.getByTestId("graph-node-10")).toHaveClass("selected");
    expect(screen.queryByTestId("graph-node-1")).not.toBeInTheDocument(); // scrolled far away

    await user.keyboard("{Enter}");
    expect(backend.argsOf("thaw")).toEqual([{ node: 10 }]);
    await waitFor(() => expect(screen.getByTestId("graph-node-10")).toHaveClass("current"));
  });

  it("follows a selection 3,000 levels down a chain, its whole path highlighted", async () => {
    const chain = Array.from({ length: 3000 }, (_, i) => node({ id: i + 1, parent: i === 0 ? null : i, created_at: i }));
    fakeBackend({ list_tree: () => chain });
    const app = await readyApp();
    renderWithApp(GraphView, {}, app);
    app.library.selected = 3000;
    await waitFor(() => expect(screen.getByTestId("graph-node-3000")).toHaveClass("selected"));
    expect(screen.getByTestId("graph-node-3000")).toHaveClass("on-path");
    expect(screen.getByTestId("graph-node-2999")).toHaveClass("on-path");
    expect(screen.getByTestId("graph-edge-2999-3000")).toHaveClass("on-path");
    expect(screen.queryByTestId("graph-node-1")).not.toBeInTheDocument();

    const user = userEvent.setup();
    screen.getByTestId("graph-svg").focus();
    await user.keyboard("{Home}");
    expect(app.library.selected).toBe(1);
    expect(screen.getByTestId("graph-node-1")).toHaveClass("selected");
    await user.keyboard("{ArrowRight}");
    expect(app.library.selected).toBe(2);
  });
});
