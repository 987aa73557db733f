// Keys for the voting page: 1-9 press the pick button of the draft shown at that place, t the
// tie button, x the "none is usable" button. Each key presses a form button, so the vote goes
// through the same form as a click (and the page works the same without this script).
(function () {
  "use strict";
  document.documentElement.classList.add("with-keys");
  var sent = false;
  document.addEventListener("keydown", function (event) {
    if (sent || event.repeat || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    var key = event.key.length === 1 ? event.key.toLowerCase() : "";
    if (!/^[1-9tx]$/.test(key)) {
      return;
    }
    var button = document.querySelector('button[data-key="' + key + '"]');
    if (!button) {
      return;
    }
    event.preventDefault();
    sent = true;
    button.click();
  });
})();
