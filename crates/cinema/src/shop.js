// The booking form's total, live; the server computes it again.
(function () {
  "use strict";
  var quantity = document.getElementById("quantity");
  var total = document.getElementById("total");
  if (!quantity || !total) { return; }
  var price = parseInt(quantity.getAttribute("data-price"), 10);
  var show = function () {
    var sum = price * parseInt(quantity.value, 10);
    total.textContent = "KES\u00a0" + sum.toLocaleString("en-KE");
  };
  quantity.addEventListener("change", show);
  show();
})();
