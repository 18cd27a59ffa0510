import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { fakeBackend } from "../../test/backend";
import { hostStatus, live, node, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import ForkDialog from "./ForkDialog.svelte";
import { describeForkPoint } from "./fork-point";

const chat = live({
  node: 1,
  transcript: {
    mode: "chat",
    messages: [
      { role: "user", content: "What is a KV cache?" },
      { role: "assistant", content: "The keys and values of every past token." },
    ],
  },
});

describe("ForkDialog", () => {
  it("forks at a message under a name and thaws the new branch", async () => {
    const user = userEvent.setup();
    const child = node({ id: 5, parent: 1, name: "Lesson · deeper" });
    const backend = fakeBackend({
      status: () => hostStatus({ live: chat }),
      list_tree: () => [node({ id: 1, name: "Lesson" }), child],
      fork: () => thawReport({ node: 5, millis: 3, reused_tokens: 20, live: live({ node: 5 }) }),
    });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(ForkDialog, { node: 1, at: { message: 0, char_offset: null }, onclose }, app);

    expect(screen.getByTestId("fork-where")).toHaveTextContent("up to and including your message “What is a KV cache?”");
    const name = screen.getByTestId("fork-name");
    expect(name).toHaveValue("Lesson · branch");
    await user.clear(name);
    await user.type(name, "Lesson · deeper");
    await user.click(screen.getByTestId("fork-submit"));

    expect(backend.argsOf("fork")).toEqual([
      { node: 1, at: { message: 0, char_offset: null }, name: "Lesson · deeper" },
    ]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.session.live?.node).toBe(5);
    expect(app.session.report).toBe("forked Lesson · deeper in 3 ms · full reuse of 20 tokens · from memory");
  });

  it("warns that unfrozen changes are not part of the node", async () => {
    fakeBackend({ status: () => hostStatus({ live: { ...chat, dirty: true } }), list_tree: () => [node({ id: 1 })] });
    const app = await readyApp();
    renderWithApp(ForkDialog, { node: 1, at: null, onclose: () => {} }, app);
    expect(screen.getByTestId("fork-unfrozen")).toBeInTheDocument();
    expect(screen.getByTestId("fork-where")).toHaveTextContent("The whole node");
  });
});

describe("describeForkPoint", () => {
  it("names a character cut in a story", () => {
    expect(describeForkPoint({ message: 0, char_offset: 1200 }, { mode: "text", text: "…" })).toBe(
      "The text up to character 1,200; what follows is left out.",
    );
  });

  it("falls back to the message number without a transcript", () => {
    expect(describeForkPoint({ message: 2, char_offset: null }, null)).toBe(
      "The conversation up to and including message 3.",
    );
  });

  it("quotes a reply that is a function call by its call", () => {
    const messages = [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", tool_calls: [{ id: "c", name: "get_weather", arguments: '{"city": "Oslo"}' }] },
      { role: "tool", content: "12 C", tool_call_id: "c" },
    ];
    expect(describeForkPoint({ message: 1, char_offset: null }, { mode: "chat", messages })).toBe(
      'The conversation up to and including the model\'s reply “get_weather({"city": "Oslo"})”.',
    );
    expect(describeForkPoint({ message: 2, char_offset: null }, { mode: "chat", messages })).toBe(
      "The conversation up to and including the tool result “12 C”.",
    );
  });
});
