// The app's state objects, created once in App.svelte and handed to components via context.
import { getContext, setContext } from "svelte";
import { Library } from "./library.svelte";
import { Notices } from "./notices.svelte";
import { Session } from "./session.svelte";
import { Ui } from "./ui.svelte";

export type AppState = { session: Session; library: Library; notices: Notices; ui: Ui };

export const APP_KEY = Symbol("freeze-attn");

export function createAppState(): AppState {
  const notices = new Notices();
  const library = new Library(notices);
  const session = new Session(library, notices);
  return { session, library, notices, ui: new Ui() };
}

export function provideApp(state: AppState): AppState {
  return setContext(APP_KEY, state);
}

export function useApp(): AppState {
  const state = getContext<AppState | undefined>(APP_KEY);
  if (!state) throw new Error("useApp() outside of App: provide the state with provideApp()");
  return state;
}
