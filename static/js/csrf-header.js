// Copy the CSRF cookie into the header Litestar checks, for every htmx request (design/fragments.md §2).
document.addEventListener("htmx:configRequest", function (evt) {
  var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (m) { evt.detail.headers["x-csrftoken"] = decodeURIComponent(m[1]); }
});
