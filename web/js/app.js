// The dashboard's entry point (replaced by the full app below).
document.getElementById('main').textContent = 'Herald';
