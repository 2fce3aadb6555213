from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("posts/<slug:slug>", views.post, name="post"),
    path("posts/<slug:slug>/login", views.login, name="login"),
    path("posts/<slug:slug>/unlock", views.unlock, name="unlock"),
    path("purchases/<uuid:pk>", views.returned, name="returned"),
    path("lipa/webhook", views.webhook, name="webhook"),
]
