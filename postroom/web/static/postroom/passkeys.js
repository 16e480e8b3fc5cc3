// Shows a readable message when a passkey ceremony fails (cancelled, timed out, not allowed),
// instead of leaving the button silently unresponsive. django-allauth dispatches the event.
document.addEventListener("allauth.error", (event) => {
  const box = document.querySelector("[data-passkey-error]");
  if (!box) return;
  event.preventDefault();
  box.classList.remove("hidden");
  console.warn("passkey ceremony failed:", event.detail && event.detail.exception);
});
