// The editor's tag picker. A <datalist> matches only the whole field, so after a comma this
// offers "what you typed, <tag>" for every existing tag not yet in the field. Listening on the
// document keeps it working after htmx swaps the editor in place. Without JavaScript the
// datalist still suggests the first tag and the field stays plain comma-separated text.
const names = new WeakMap();
document.addEventListener("input", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLInputElement) || !field.hasAttribute("data-tag-picker")) return;
  const list = document.getElementById(field.getAttribute("list") || "");
  if (!list) return;
  if (!names.has(list)) names.set(list, [...list.querySelectorAll("option")].map((o) => o.value));
  const cut = field.value.lastIndexOf(",");
  const head = cut < 0 ? "" : field.value.slice(0, cut + 1).trimEnd() + " ";
  const used = new Set(field.value.split(",").map((t) => t.trim().toLowerCase()));
  list.replaceChildren(...names.get(list).filter((n) => !used.has(n.toLowerCase())).map((n) => {
    const option = document.createElement("option");
    option.value = head + n;
    return option;
  }));
});
