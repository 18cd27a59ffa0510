import { render, screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import App from "./App.svelte";
import { deferred, fakeBackend } from "./test/backend";
import { hostStatus, live, node, reply, thawReport } from "./test/fixtures";

describe("App", () => {
  it("shows a clear 'backend not available' state without the Tauri bridge", async () => {
    const internals = (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__;
    delete (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__;
    try {
      fakeBackend({
        status: () => {
          throw new TypeError("Cannot read properties of undefined (reading 'invoke')");
        },
      });
      render(App);
      expect(await screen.findByTestId("backend-missing")).toHaveTextContent("Backend not available");
      expect(screen.getByTestId("status-unavailable")).toBeInTheDocument();
      expect(screen.getByTestId("freeze-open")).toBeDisabled();
    } finally {
      (window as unknown as Record<string, unknown>).__TAURI_INTERNALS__ = internals;
    }
  });

  it("says why when the backend is there but failed to start", async () => {
    fakeBackend({ status: () => Promise.reject({ code: "model_load", message: "The default model file is missing." }) });
    render(App);
    expect(await screen.findByTestId("backend-missing-reason")).toHaveTextContent("The default model file is missing.");
  });

  it("switches to the view of a thawed node's kind", async () => {
    const user = userEvent.setup();
    fakeBackend({
      list_tree: () => [node({ id: 4, name: "Tale", kind: "story" })],
      thaw: () =>
        thawReport({ node: 4, live: live({ node: 4, kind: "story", transcript: { mode: "text", text: "Once upon a time" } }) }),
    });
    render(App);
    await user.click(await screen.findByTestId("tree-node-4"));
    expect(await screen.findByTestId("story-text")).toHaveValue("Once upon a time");
    expect(screen.getByTestId("status-report")).toHaveTextContent("thawed Tale in 12 ms · full reuse of 1,234 tokens");
  });

  it("asks before another node replaces unfrozen turns, and can keep them as a draft", async () => {
    const user = userEvent.setup();
    const dirty = live({ node: 2, dirty: true, token_count: 120 });
    const backend = fakeBackend({
      status: () => hostStatus({ live: dirty }),
      list_tree: () => [node({ id: 2, name: "Chat" }), node({ id: 4, name: "Tale", kind: "story" })],
      freeze: ({ name }) => node({ id: 9, name: name as string, parent: 2 }),
      thaw: () =>
        thawReport({ node: 4, live: live({ node: 4, kind: "story", transcript: { mode: "text", text: "Once" } }) }),
    });
    render(App);
    await user.click(await screen.findByTestId("tree-node-4"));
    expect(await screen.findByTestId("unfrozen-dialog")).toBeInTheDocument();
    expect(backend.argsOf("thaw")).toHaveLength(0);
    // Cancel keeps everything as it was.
    await user.click(screen.getByTestId("unfrozen-cancel"));
    await waitFor(() => expect(screen.queryByTestId("unfrozen-dialog")).not.toBeInTheDocument());
    expect(backend.argsOf("thaw")).toHaveLength(0);
    // Keep as a draft: the live state is frozen first, then the node is opened.
    await user.click(screen.getByTestId("tree-node-4"));
    await user.click(await screen.findByTestId("unfrozen-keep"));
    await waitFor(() => expect(backend.argsOf("thaw")).toEqual([{ node: 4 }]));
    const [frozen] = backend.argsOf("freeze");
    expect(frozen.name).toMatch(/^draft \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(frozen.kind).toBe("chat");
    const order = backend.calls.map(([c]) => c).filter((c) => c === "freeze" || c === "thaw");
    expect(order).toEqual(["freeze", "thaw"]);
    expect(await screen.findByTestId("story-text")).toHaveValue("Once");
  });

  it("discards unfrozen turns only when asked to", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ node: 2, dirty: true, token_count: 50 }) }),
      list_tree: () => [node({ id: 2, name: "Chat" }), node({ id: 4, name: "Tale", kind: "story" })],
      thaw: () => thawReport({ node: 4, live: live({ node: 4, kind: "story" }) }),
    });
    render(App);
    await user.click(await screen.findByTestId("tree-node-4"));
    await user.click(await screen.findByTestId("unfrozen-discard"));
    await waitFor(() => expect(backend.argsOf("thaw")).toEqual([{ node: 4 }]));
    expect(backend.argsOf("freeze")).toHaveLength(0);
  });

  it("offers no Freeze on an empty live state", async () => {
    const user = userEvent.setup();
    fakeBackend({ status: () => hostStatus({ live: live({ token_count: 0 }) }) });
    render(App);
    await screen.findByTestId("chat-empty");
    expect(screen.getByTestId("freeze-open")).toBeDisabled();
    await user.keyboard("{Control>}s{/Control}");
    expect(screen.queryByTestId("freeze-dialog")).not.toBeInTheDocument();
  });

  it("opens Freeze with Ctrl+S and Fork with Ctrl+B, and lists shortcuts", async () => {
    const user = userEvent.setup();
    fakeBackend({
      status: () => hostStatus({ live: live({ node: 2, dirty: true, token_count: 80 }) }),
      list_tree: () => [node({ id: 2, name: "Chat" })],
    });
    render(App);
    await screen.findByTestId("chat-empty");
    await user.keyboard("{Control>}s{/Control}");
    expect(await screen.findByTestId("freeze-dialog")).toBeInTheDocument();
    await user.keyboard("{Escape}");
    await waitFor(() => expect(screen.queryByTestId("freeze-dialog")).not.toBeInTheDocument());

    await user.keyboard("{Control>}b{/Control}");
    expect(await screen.findByTestId("fork-dialog")).toBeInTheDocument();
    expect(screen.getByTestId("fork-name")).toHaveValue("Chat · branch");
    await user.click(screen.getByTestId("fork-dialog-close"));

    await user.click(screen.getByTestId("help-open"));
    expect(screen.getByTestId("help-popover")).toHaveTextContent("Freeze the live state");
  });

  it("stops a running generation with Esc", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    const backend = fakeBackend({
      chat_send: async () => {
        await gate.promise;
        return reply({ finish: "cancelled" });
      },
      stop: () => {
        gate.resolve();
        return null;
      },
    });
    render(App);
    await user.type(await screen.findByTestId("composer-input"), "Write a long poem");
    await user.click(screen.getByTestId("composer-send"));
    await screen.findByTestId("composer-stop");
    await user.keyboard("{Escape}");
    await waitFor(() => expect(backend.argsOf("stop")).toHaveLength(1));
    await screen.findByTestId("composer-send");
  });

  it("starts a new chat with a system prompt", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      start_live: ({ system }) =>
        live({ transcript: { mode: "chat", messages: [{ role: "system", content: system as string }] } }),
    });
    render(App);
    await user.click(await screen.findByTestId("new-chat"));
    await user.type(screen.getByTestId("new-live-system"), "You are a pirate.");
    await user.click(screen.getByTestId("new-live-submit"));
    expect(backend.argsOf("start_live")).toEqual([{ kind: "chat", system: "You are a pirate." }]);
    expect(await screen.findByTestId("message-0")).toHaveTextContent("You are a pirate.");
  });

  it("opens the inspector as a drawer from the top bar (the narrow layout's only way to it)", async () => {
    const user = userEvent.setup();
    fakeBackend();
    render(App);
    const toggle = await screen.findByTestId("inspector-toggle");
    expect(toggle).toHaveAttribute("aria-expanded", "false");
    expect(screen.getByTestId("inspector-panel")).not.toHaveClass("open");
    await user.click(toggle);
    expect(toggle).toHaveAttribute("aria-expanded", "true");
    expect(screen.getByTestId("inspector-panel")).toHaveClass("open");
    await user.click(toggle);
    expect(screen.getByTestId("inspector-panel")).not.toHaveClass("open");
  });
});
