import gc
import os

from django.core.wsgi import get_wsgi_application

# A collection of the youngest generation every 50,000 new objects instead of every 700. A
# 1,000-record body keeps tens of thousands of objects alive while it runs: at 700 each one was
# seen by several young collections, promoted to the oldest generation, and every second body
# paid for a full collection (about 80 ms, over every object of the loaded application).
GC_YOUNG_THRESHOLD = 50_000

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
application = get_wsgi_application()
