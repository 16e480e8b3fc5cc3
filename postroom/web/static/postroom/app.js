// Small progressive enhancements; every page works without this file.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});
// Settings › Mailboxes: a provider fills the server fields at once (without JS, the "Fill in"
// button reloads the page with ?preset=), and only the chosen sign-in's fields are shown.
document.addEventListener("change", (event) => {
  const select = event.target.closest("[data-preset-select]");
  if (!select) return;
  const option = select.selectedOptions[0];
  for (const [key, value] of Object.entries(option ? option.dataset : {})) {
    const input = document.getElementById(`id_${key}`);
    if (input) input.value = value;
  }
});
function showAuthFields() {
  const kind = document.getElementById("id_auth_kind");
  if (!kind) return;
  const oauth = kind.value !== "password";
  document.querySelectorAll("[data-auth]").forEach((block) => {
    block.hidden = (block.dataset.auth === "oauth") !== oauth;
  });
}
document.addEventListener("change", (event) => {
  if (event.target.id === "id_auth_kind") showAuthFields();
});
document.addEventListener("DOMContentLoaded", () => {
  showAuthFields();
  document.querySelectorAll("[data-preset-button]").forEach((button) => { button.hidden = true; });
});
