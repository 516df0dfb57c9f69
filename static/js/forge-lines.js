// Line ranges on the forge's file and blame pages: "#L10-L20" marks lines 10 to 20 (":target" in
// forge-browse.css marks a single "#L10" without any script); shift-click on a line number
// extends the selection. Without JavaScript single-line anchors still work.
function mark() {
  document.querySelectorAll("tr.line-selected").forEach((row) => row.classList.remove("line-selected"));
  const found = /^#L(\d+)(?:-L(\d+))?$/.exec(window.location.hash);
  if (!found || !found[2]) return;
  const [from, to] = [Number(found[1]), Number(found[2])].sort((a, b) => a - b);
  for (let n = from; n <= to && n - from < 10000; n++) document.getElementById("L" + n)?.classList.add("line-selected");
  document.getElementById("L" + from)?.scrollIntoView({ block: "center" });
}
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("td.ln a") : null;
  if (!link || !event.shiftKey) return;
  const current = /^#L(\d+)/.exec(window.location.hash);
  const clicked = /^#L(\d+)$/.exec(link.getAttribute("href") || "");
  if (!current || !clicked) return;
  event.preventDefault();
  const [a, b] = [Number(current[1]), Number(clicked[1])].sort((x, y) => x - y);
  history.replaceState(null, "", `#L${a}-L${b}`);
  mark();
});
window.addEventListener("hashchange", mark);
document.addEventListener("DOMContentLoaded", mark);
