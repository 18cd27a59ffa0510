import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { AltEvent, GenEvent } from "../../lib/api";
import { deferred, emit, fakeBackend } from "../../test/backend";
import { hostStatus, live, node, reply, params } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import StoryPane from "./StoryPane.svelte";

const story = (text: string, over = {}) =>
  live({ kind: "story", node: 3, token_count: 12, transcript: { mode: "text", text }, ...over });

describe("StoryPane", () => {
  it("starts a new story when there is none", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({ start_live: () => story("", { node: null }) });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.click(screen.getByTestId("story-new"));
    expect(backend.argsOf("start_live")).toEqual([{ kind: "story", system: null }]);
    expect(await screen.findByTestId("story-draft")).toBeInTheDocument();
  });

  it("continues with the user's edited text and streams the continuation", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    const backend = fakeBackend({
      status: () => hostStatus({ live: story("The lighthouse keeper") }),
      continue_text: async (args) => {
        emit<GenEvent>(args, { kind: "text", text: " kept a secret" });
        await gate.promise;
        return reply({ tokens: 3, live: story("The lighthouse keeper woke. He kept a secret", { dirty: true }) });
      },
    });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.type(screen.getByTestId("story-draft"), " woke.");
    await user.keyboard("{Control>}{Enter}{/Control}");

    await waitFor(() =>
      expect(screen.getByTestId("story-text")).toHaveValue("The lighthouse keeper kept a secret"),
    );
    expect(backend.argsOf("continue_text")[0].text).toBe(" woke.");
    gate.resolve();
    await waitFor(() =>
      expect(screen.getByTestId("story-text")).toHaveValue("The lighthouse keeper woke. He kept a secret"),
    );
    expect(screen.getByTestId("story-draft")).toHaveValue("");
  });

  it("streams N alternatives into their own columns and keeps the chosen one", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    const kept = [node({ id: 11, name: "Night · next", kind: "story" }), node({ id: 12, kind: "story" })];
    const backend = fakeBackend({
      status: () => hostStatus({ live: story("It was night.") }),
      list_tree: () => [node({ id: 3, name: "Night", kind: "story" })],
      story_alternatives: async (args) => {
        emit<AltEvent>(args, { index: 1, text: "Rain " }, { index: 0, text: "A knock " }, { index: 1, text: "fell." });
        await gate.promise;
        return [
          { index: 0, text: "A knock came.", tokens: 4 },
          { index: 1, text: "Rain fell.", tokens: 3 },
        ];
      },
      keep_alternative: () => kept,
    });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.clear(screen.getByTestId("alt-count"));
    await user.type(screen.getByTestId("alt-count"), "2");
    await user.click(screen.getByTestId("alt-generate"));

    await waitFor(() => expect(screen.getByTestId("alt-1")).toHaveTextContent("Rain fell."));
    expect(screen.getByTestId("alt-0")).toHaveTextContent("A knock");
    expect(backend.argsOf("story_alternatives")[0]).toMatchObject({ n: 2, params: params() });
    expect(backend.argsOf("continue_text")).toEqual([]); // nothing typed: nothing to append first
    expect(screen.getByTestId("alt-keep-0")).toBeDisabled(); // not while streaming

    gate.resolve();
    await waitFor(() => expect(within(screen.getByTestId("alt-0")).getByText("4 tokens")).toBeInTheDocument());
    expect(screen.getByTestId("alt-keep-name")).toHaveValue("Night · next");
    await user.click(screen.getByTestId("alt-keep-others"));
    await user.click(screen.getByTestId("alt-keep-1"));
    expect(backend.argsOf("keep_alternative")).toEqual([{ index: 1, name: "Night · next", keepOthers: false }]);
    await waitFor(() => expect(screen.queryByTestId("alternatives")).not.toBeInTheDocument());
    expect(app.library.selected).toBe(11);
  });

  it("appends typed text before generating alternatives from it", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: story("Dawn.") }),
      continue_text: () => reply({ live: story("Dawn. Then", { dirty: true }) }),
      story_alternatives: () => [{ index: 0, text: " silence.", tokens: 2 }],
    });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.type(screen.getByTestId("story-draft"), " Then");
    await user.click(screen.getByTestId("alt-generate"));
    await waitFor(() => expect(backend.argsOf("story_alternatives")).toHaveLength(1));
    const [append] = backend.argsOf("continue_text");
    expect(append.text).toBe(" Then");
    expect((append.params as { max_tokens: number }).max_tokens).toBe(0);
    expect(backend.calls.map(([c]) => c).slice(-2)).toEqual(["continue_text", "story_alternatives"]);
  });

  it("moves an alternative into the editor to change it before continuing", async () => {
    const user = userEvent.setup();
    fakeBackend({
      status: () => hostStatus({ live: story("Dawn.") }),
      story_alternatives: () => [{ index: 0, text: " Birds sang.", tokens: 3 }],
    });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.click(screen.getByTestId("alt-generate"));
    await user.click(await screen.findByTestId("alt-edit-0"));
    expect(screen.getByTestId("story-draft")).toHaveValue(" Birds sang.");
    expect(screen.queryByTestId("alternatives")).not.toBeInTheDocument();
  });

  it("regenerates alternatives from the same state", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: story("Dawn.") }),
      story_alternatives: () => [{ index: 0, text: "x", tokens: 1 }],
    });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    await user.click(screen.getByTestId("alt-generate"));
    await user.click(await screen.findByTestId("alt-regenerate"));
    await waitFor(() => expect(backend.argsOf("story_alternatives")).toHaveLength(2));
  });

  it("forks at the cursor position in the story text", async () => {
    const user = userEvent.setup();
    fakeBackend({ status: () => hostStatus({ live: story("It was a dark and stormy night.") }) });
    const app = await readyApp();
    renderWithApp(StoryPane, {}, app);
    const text = screen.getByTestId("story-text") as HTMLTextAreaElement;
    text.setSelectionRange(8, 8);
    await fireEvent.keyUp(text);
    await user.click(screen.getByTestId("story-fork-cursor"));
    expect(app.ui.dialog).toEqual({ kind: "fork", node: 3, at: { message: 0, char_offset: 8 } });
  });
});
