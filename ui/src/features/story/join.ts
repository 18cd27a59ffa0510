// Appending the user's words to a story: "the door" + "Then" must read "the door Then", not
// "the doorThen". A space is added only between two words; text that starts with whitespace or
// closing punctuation, and a story that ends with whitespace or an opening bracket or quote, are
// joined as typed.
const NO_SPACE_BEFORE = /^[\s.,;:!?)\]}'"’”…-]/u;
const NO_SPACE_AFTER = /[\s(\[{'"‘“-]$/u;

export function joinDraft(story: string, draft: string): string {
  if (!story || !draft || NO_SPACE_BEFORE.test(draft) || NO_SPACE_AFTER.test(story)) return draft;
  return " " + draft;
}
