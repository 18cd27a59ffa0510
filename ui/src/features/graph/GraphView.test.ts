import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeBackend } from "../../test/backend";
import { hostStatus, live, node, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import GraphView from "./GraphView.svelte";

const nodes = [
  node({ id: 1, name: "Root" }),
  node({ id: 2, parent: 1, name: "Left" }),
  node({ id: 3, parent: 1, name: "Right" }),
  node({ id: 8, name: "Another tree" }),
];

describe("GraphView", () => {
  it("maps the current node's tree, highlights it, and thaws on click", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ node: 2 }) }),
      list_tree: () => nodes,
      thaw: () => thawReport({ node: 3, live: live({ node: 3 }) }),
    });
    const app = await readyApp();
    app.session.view = "graph";
    renderWithApp(GraphView, {}, app);

    expect(screen.getByTestId("graph-root")).toHaveValue("1");
    expect(screen.getByTestId("graph-edge-1-2")).toBeInTheDocument();
    expect(screen.getByTestId("graph-edge-1-3")).toBeInTheDocument();
    expect(screen.queryByTestId("graph-node-8")).not.toBeInTheDocument();
    expect(screen.getByTestId("graph-node-2")).toHaveClass("current");

    await user.click(screen.getByTestId("graph-node-3"));
    expect(backend.argsOf("thaw")).toEqual([{ node: 3 }]);
    await waitFor(() => expect(screen.getByTestId("graph-node-3")).toHaveClass("current"));
    expect(app.session.view).toBe("graph"); // the map stays open after a thaw from it
  });

  it("switches to another tree", async () => {
    const user = userEvent.setup();
    fakeBackend({ list_tree: () => nodes });
    const app = await readyApp();
    renderWithApp(GraphView, {}, app);
    await user.selectOptions(screen.getByTestId("graph-root"), "8");
    expect(screen.getByTestId("graph-node-8")).toBeInTheDocument();
    expect(screen.queryByTestId("graph-node-1")).not.toBeInTheDocument();
  });

  it("explains an empty library", async () => {
    fakeBackend();
    const app = await readyApp();
    renderWithApp(GraphView, {}, app);
    expect(screen.getByTestId("graph-empty")).toBeInTheDocument();
  });
});
