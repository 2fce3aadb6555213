from django.db import migrations


def add_post(apps, schema_editor):
    apps.get_model("paywall", "Post").objects.create(
        slug="nyama-choma",
        title="Where Nairobi really eats nyama choma",
        teaser="Twelve joints, four weekends, one winner. The list is for subscribers.",
        body="1. The winner is the place with no sign...\n\nThe full list, with prices and opening hours, follows.",
        price=50,
    )


class Migration(migrations.Migration):
    dependencies = [("paywall", "0001_initial")]
    operations = [migrations.RunPython(add_post, migrations.RunPython.noop)]
