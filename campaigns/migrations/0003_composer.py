"""Composer: layouts (with the default one), attachments, reusable templates, body modes."""

import campaigns.models
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def create_default_layout(apps, schema_editor):
    from campaigns.composer.layouts import DEFAULT_LAYOUT_CSS, DEFAULT_LAYOUT_HTML, DEFAULT_LAYOUT_NAME

    Layout = apps.get_model("campaigns", "Layout")
    if not Layout.objects.filter(is_default=True).exists():
        Layout.objects.create(
            name=DEFAULT_LAYOUT_NAME, html=DEFAULT_LAYOUT_HTML, css=DEFAULT_LAYOUT_CSS, is_default=True
        )


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0002_engine_tick_schedule'),
    ]

    operations = [
        migrations.CreateModel(
            name='Layout',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('html', models.TextField(verbose_name='Layout HTML')),
                ('css', models.TextField(blank=True, verbose_name='CSS')),
                ('primary_colour', models.CharField(default='#1f4e8c', max_length=7)),
                ('background_colour', models.CharField(default='#f4f5f7', max_length=7)),
                ('text_colour', models.CharField(default='#222222', max_length=7)),
                ('logo_url', models.URLField(blank=True, max_length=500)),
                ('is_default', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['-is_default', 'name'],
            },
        ),
        migrations.AddField(
            model_name='campaign',
            name='body_mode',
            field=models.CharField(choices=[('rich', 'Rich text'), ('markdown', 'Markdown'), ('html', 'HTML')], default='html', max_length=8),
        ),
        migrations.AddField(
            model_name='campaign',
            name='body_source',
            field=models.TextField(blank=True, default='', verbose_name='Body source'),
        ),
        migrations.CreateModel(
            name='CampaignAttachment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('file', models.FileField(max_length=500, upload_to=campaigns.models.attachment_path)),
                ('filename', models.CharField(max_length=200)),
                ('content_type', models.CharField(max_length=100)),
                ('size', models.PositiveBigIntegerField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attachments', to='campaigns.campaign')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='CampaignTemplate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('subject', models.CharField(max_length=255)),
                ('preheader', models.CharField(blank=True, max_length=255)),
                ('body_mode', models.CharField(choices=[('rich', 'Rich text'), ('markdown', 'Markdown'), ('html', 'HTML')], default='html', max_length=8)),
                ('body_source', models.TextField(blank=True)),
                ('html_body', models.TextField()),
                ('text_body', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('layout', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='campaigns.layout')),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='campaign',
            name='layout',
            field=models.ForeignKey(blank=True, default=None, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='campaigns', to='campaigns.layout'),
        ),
        migrations.RunPython(create_default_layout, migrations.RunPython.noop),
    ]
